"""Chat Completions types: the request, response and stream chunk.

They follow the official OpenAI spec (``CreateChatCompletionRequest``,
``CreateChatCompletionResponse``, ``CreateChatCompletionStreamResponse``) and
are uniinfer's internal lingua franca: every ingress is normalised to
:class:`ChatRequest`, every provider answers with :class:`ChatResponse` or a
stream of :class:`ChatChunk`.

Request models forbid unknown fields, as the OpenAI API does, so a typo is a
400 naming the field instead of a silently ignored setting, and they are
strict about types: ``"max_tokens": true`` or ``"stream": "yes"`` is a 400,
not a silent 1 or ``True`` (pydantic's lax mode would convert them). Response
models ignore unknown upstream fields and stay lenient, so a provider adding a
field or sending ``"5"`` for a count never breaks parsing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from uniinfer.types.usage import Usage

__all__ = [
    "MAX_MODEL_NAME",
    "AnswerBlock",
    "AssistantMessage",
    "ChatChoice",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ChunkDelta",
    "ContentPart",
    "DeveloperMessage",
    "FunctionCall",
    "FunctionDefinition",
    "ImagePart",
    "ImageURL",
    "JSONSchemaFormat",
    "Message",
    "MessagesIntent",
    "RawEvents",
    "ResponseMessage",
    "SignedThinking",
    "StreamItem",
    "StreamOptions",
    "SystemMessage",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolMessage",
    "TurnBlock",
    "UserMessage",
]

#: Strict: the OpenAI API rejects ``"2"`` for an integer and ``1`` for a boolean, and so do we.
_REQUEST = ConfigDict(extra="forbid", strict=True)
#: The longest model name a request may carry (provider model ids are far shorter; a name
#: is kept per deployment in routing state and echoed in response headers).
MAX_MODEL_NAME = 256
#: Answers keep the fields uniinfer does not model (a delta's ``function_call`` or ``audio``, a
#: chunk's ``obfuscation``...): an answer the gateway re-models (a usage chunk with choices, a
#: row whose finish reasons it maps) reaches the client with everything the provider sent.
_RESPONSE = ConfigDict(extra="allow")


def _with_nulls(data: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """``data`` with the fields the OpenAI spec requires but allows null, as null when left out
    (answers are written without their ``None`` fields; strict clients want these present)."""
    for name in required:
        data.setdefault(name, None)
    return data


def _reasoning_named(data: Any) -> Any:
    """A model's reasoning text is ``reasoning_content`` (DeepSeek's name, most servers') or
    ``reasoning`` (vLLM's since 0.11.2, OpenRouter's; some servers write both): the second
    is read where the first is missing or null, and then left out."""
    if isinstance(data, dict) and "reasoning" in data:
        data = dict(data)
        reasoning = data.pop("reasoning")
        if data.get("reasoning_content") is None and isinstance(reasoning, str):
            data["reasoning_content"] = reasoning
    return data


def _not_from_clients(value: Any) -> Any:
    """Reject a field that only uniinfer's ingresses set (with ``model_copy``, which does not validate).

    A client sending it gets the 400 of any unknown field, as if it did not exist.
    The check runs only when the field is present, so it costs other requests nothing.
    """
    raise PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")


#: Lists and maps of a request stop at their first bad item: only the first problem is reported
#: (:mod:`uniinfer.validation`), and a body of a million bad items made pydantic build an error
#: for each, in every member of a union, seconds of the event loop's time for one request.
FIRST = Field(fail_fast=True)


# --- content parts -------------------------------------------------------------


class TextPart(BaseModel):
    model_config = _REQUEST
    type: Literal["text"]
    text: str
    #: Anthropic-style prompt-cache hint; providers that cache use it, others ignore it.
    cache_control: dict[str, Any] | None = None
    prompt_cache_breakpoint: dict[str, Any] | None = None


#: Anthropic's prompt-cache breakpoint on an image, a document, a tool or a tool call (the
#: Messages API takes one on each): read by the Claude adapter only, and never part of the
#: OpenAI-shaped body the other adapters dump (no OpenAI-compatible API takes it there).
_CacheBreakpoint = Annotated[dict[str, Any] | None, Field(default=None, exclude=True)]


class ImageURL(BaseModel):
    model_config = _REQUEST
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    model_config = _REQUEST
    type: Literal["image_url"]
    image_url: ImageURL
    cache_control: _CacheBreakpoint = None
    prompt_cache_breakpoint: dict[str, Any] | None = None
    #: The ``tool_use_id`` whose Anthropic ``tool_result`` held this image, and the image's place
    #: in it: OpenAI's tool messages take text only, so the Anthropic Messages ingress moves such
    #: images into the user message after the results and marks them here; the Claude adapter
    #: puts them back in their result, in their place. Never serialised, never from a client.
    of_tool_result: tuple[str, int] | None = Field(default=None, exclude=True)

    _clients_cannot_set = field_validator("of_tool_result", mode="before")(_not_from_clients)


class InputAudio(BaseModel):
    model_config = _REQUEST
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(BaseModel):
    model_config = _REQUEST
    type: Literal["input_audio"]
    input_audio: InputAudio
    prompt_cache_breakpoint: dict[str, Any] | None = None


class FilePart(BaseModel):
    model_config = _REQUEST
    type: Literal["file"]
    file: Annotated[dict[str, str], FIRST]
    cache_control: _CacheBreakpoint = None
    prompt_cache_breakpoint: dict[str, Any] | None = None


class RefusalPart(BaseModel):
    model_config = _REQUEST
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]


# --- tools ---------------------------------------------------------------------


class FunctionDefinition(BaseModel):
    model_config = _REQUEST
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    model_config = _REQUEST
    type: Literal["function"] = "function"
    function: FunctionDefinition
    cache_control: _CacheBreakpoint = None


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    cache_control: _CacheBreakpoint = None


class _NamedFunction(BaseModel):
    model_config = _REQUEST
    name: str


class ToolChoiceFunction(BaseModel):
    model_config = _REQUEST
    type: Literal["function"]
    function: _NamedFunction


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


# --- signed thinking -----------------------------------------------------------


class SignedThinking(BaseModel):
    """A block of a model's thinking as its provider signed it: Anthropic's ``thinking``
    (text and ``signature``) or ``redacted_thinking`` (encrypted ``data``).

    https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking: in a tool
    loop the API wants the assistant turn's thinking blocks back, complete and
    unmodified, or it refuses the request. OpenAI's format has no place for them,
    so the models below carry them in fields that are never serialised; only the
    Anthropic adapter and the Anthropic Messages ingress read them, and no other
    provider is sent a signature.
    """

    model_config = _RESPONSE
    type: Literal["thinking", "redacted_thinking"]
    #: ``thinking``: the text (streamed as ``reasoning_content``, so empty in a chunk).
    thinking: str = ""
    #: ``thinking``: the provider's signature of the text.
    signature: str = ""
    #: ``redacted_thinking``: the encrypted thinking.
    data: str = ""

    def block(self) -> dict[str, str]:
        """The block in Anthropic's shape, as it came."""
        if self.type == "redacted_thinking":
            return {"type": "redacted_thinking", "data": self.data}
        return {"type": "thinking", "thinking": self.thinking, "signature": self.signature}


#: A block of an answer in its provider's order (:attr:`ResponseMessage.content_blocks`): a text
#: piece, or one of the message's tool calls or signed thinking blocks.
AnswerBlock = str | ToolCall | SignedThinking
#: A block of an assistant turn in its client's order (:attr:`AssistantMessage.content_blocks`).
TurnBlock = TextPart | ToolCall | SignedThinking


# --- messages ------------------------------------------------------------------


class SystemMessage(BaseModel):
    model_config = _REQUEST
    role: Literal["system"]
    content: str | Annotated[list[TextPart], FIRST]
    name: str | None = None


class DeveloperMessage(BaseModel):
    model_config = _REQUEST
    role: Literal["developer"]
    content: str | Annotated[list[TextPart], FIRST]
    name: str | None = None


class UserMessage(BaseModel):
    model_config = _REQUEST
    role: Literal["user"]
    content: str | Annotated[list[ContentPart], FIRST]
    name: str | None = None


class AssistantMessage(BaseModel):
    model_config = _REQUEST
    role: Literal["assistant"]
    content: str | Annotated[list[AssistantPart], FIRST] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: Annotated[list[ToolCall], FIRST] | None = None
    audio: dict[str, Any] | None = None
    function_call: FunctionCall | None = None
    #: Reasoning text of a previous turn (DeepSeek / LiteLLM convention).
    reasoning_content: str | None = None
    #: OpenRouter's structured reasoning of a previous turn, sent back as it came (to OpenRouter
    #: only: :attr:`~uniinfer.providers.base.ProviderSpec.reasoning_back`).
    reasoning_details: list[dict[str, Any]] | None = None
    _reasoning_name = model_validator(mode="before")(staticmethod(_reasoning_named))
    #: Present when a client appends a response message as-is (the openai SDK's
    #: ``message.model_dump()``, and ``parsed`` from its ``parse()`` and ``stream()``
    #: helpers); accepted, never sent upstream.
    annotations: Annotated[list[dict[str, Any]], FIRST] | None = Field(default=None, exclude=True)
    parsed: Any = Field(default=None, exclude=True)
    #: The turn's signed thinking blocks, in order (see :class:`SignedThinking`), set by the
    #: Anthropic Messages ingress; never serialised and never accepted from a client.
    signed_thinking: list[SignedThinking] | None = Field(default=None, exclude=True)
    #: The turn's text parts, tool calls and signed thinking in the order the client sent them,
    #: set by the Anthropic Messages ingress when OpenAI's shape (thinking, text, then the tool
    #: calls) loses it: a text after a tool call, say. Read by the Claude (API, Vertex, Bedrock)
    #: and Gemini request builders, so the turn goes back as the model produced it; never
    #: serialised and never accepted from a client.
    content_blocks: list[TurnBlock] | None = Field(default=None, exclude=True)

    _clients_cannot_set = field_validator("signed_thinking", "content_blocks", mode="before")(
        _not_from_clients
    )

    @model_validator(mode="after")
    def _has_something(self) -> AssistantMessage:
        if self.content is None and self.refusal is not None and not self.tool_calls:
            # a refused answer appended as the openai SDK dumps it (content null): the same turn
            # as the spec's refusal part, which every provider's translation carries
            self.content, self.refusal = [RefusalPart(type="refusal", refusal=self.refusal)], None
        # a previous audio answer referred to by its id holds nothing else (OpenAI's audio
        # conversations; a provider that cannot take it is an unsupported feature, see fitting)
        if self.content is None and not self.tool_calls and self.function_call is None and self.audio is None:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


class ToolMessage(BaseModel):
    model_config = _REQUEST
    role: Literal["tool"]
    content: str | Annotated[list[TextPart], FIRST]
    tool_call_id: str = Field(min_length=1)
    #: The tool failed (Anthropic's ``tool_result.is_error``), set by the Anthropic Messages
    #: ingress, which also starts the content with ``"Error: "`` for providers without such
    #: a flag; never serialised and never accepted from a client.
    is_error: bool | None = Field(default=None, exclude=True)

    _clients_cannot_set = field_validator("is_error", mode="before")(_not_from_clients)


Message = Annotated[
    SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage,
    Discriminator("role"),
]


# --- request options -----------------------------------------------------------


class StreamOptions(BaseModel):
    model_config = _REQUEST
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class JSONSchemaSpec(BaseModel):
    model_config = _REQUEST
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(BaseModel):
    model_config = _REQUEST
    type: Literal["text"]


class JSONObjectFormat(BaseModel):
    model_config = _REQUEST
    type: Literal["json_object"]


class JSONSchemaFormat(BaseModel):
    model_config = _REQUEST
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")]


#: Request fields only OpenAI itself serves: the OpenAI-compatible rows refuse them (or drop
#: them visibly), as native adapters do; a content part's ``prompt_cache_breakpoint`` goes to
#: OpenAI only as well (a hint, left out elsewhere).
OPENAI_ONLY: frozenset[str] = frozenset({"moderation", "prompt_cache_options"})


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` body (OpenAI ``CreateChatCompletionRequest``)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    #: Values of the OpenAI spec that uniinfer knows and does not serve, by parameter (indexes
    #: as ``[]``): a 400 ``unsupported_feature`` saying so rather than "invalid value".
    UNSERVED: ClassVar[Mapping[str, Mapping[str, str]]] = {
        "tools[].type": {
            "custom": "Custom (free-form) tools are not supported by uniinfer: use function tools.",
        },
        "tool_choice.type": {
            "allowed_tools": "'tool_choice' of type 'allowed_tools' is not supported by uniinfer: "
            "send only the allowed tools in 'tools', with 'tool_choice' 'auto' or 'required'.",
            "custom": "Custom (free-form) tools are not supported by uniinfer: use function tools.",
        },
    }

    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    messages: Annotated[list[Message], FIRST] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], FIRST] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    #: Token id -> an integer bias from -100 to 100 (the spec's ``additionalProperties: integer``).
    logit_bias: Annotated[dict[str, Annotated[int, Field(ge=-100, le=100)]], FIRST] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    #: At most 16 pairs, keys up to 64 characters, values up to 512 (the spec's ``Metadata``).
    metadata: (
        Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]], FIRST]
        | None
    ) = None
    seed: int | None = None
    tools: Annotated[list[Tool], FIRST] | None = Field(default=None, min_length=1)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    #: The spec's levels (``ReasoningEffort``): ``none`` asks for no reasoning, ``xhigh`` and
    #: ``max`` for more than ``high``; each adapter maps them to what its provider has.
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    service_tier: str | None = None
    store: bool | None = None
    modalities: Annotated[list[Literal["text", "audio"]], FIRST] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    #: OpenAI's own (:data:`OPENAI_ONLY`): moderation of input and output, and prompt-cache
    #: options; as the spec gives them, checked by OpenAI.
    moderation: dict[str, Any] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    #: Not in the OpenAI API; honoured by Anthropic, Gemini, Ollama and others.
    top_k: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_consistency(self) -> ChatRequest:
        _check_stop(self.stop)
        if self.stream_options is not None and not self.stream:
            raise _field_error("stream_options", "'stream_options' is only allowed when 'stream' is true")
        if self.top_logprobs is not None and not self.logprobs:
            raise _field_error("top_logprobs", "'top_logprobs' requires 'logprobs' to be true")
        if self.metadata is not None and len(self.metadata) > 16:
            raise _field_error("metadata", "'metadata' may hold at most 16 keys")
        _check_tool_choice(self.tools, self.tool_choice)
        _check_tool_messages(self.messages)
        return self

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def messages_intent(self) -> MessagesIntent | None:
        """What an Anthropic Messages client asked for that OpenAI's format cannot say, else None.

        Not a request field (no OpenAI client can send one): :meth:`with_messages_intent`
        sets it. Claude upstreams follow it; other providers go by ``reasoning_effort``,
        which the ingress sets beside it.
        """
        return None

    def with_messages_intent(self, intent: MessagesIntent) -> ChatRequest:
        """This request carrying ``intent`` (``model_copy`` keeps it)."""
        copy = _IntentChatRequest.model_construct(self.model_fields_set, **self.__dict__)
        copy._intent = intent
        return copy


@dataclass(frozen=True, slots=True)
class MessagesIntent:
    """An Anthropic Messages client's thinking, effort, strict tools and betas, as it asked for them.

    ``reasoning_effort`` alone cannot tell "think, with this budget" from "spend
    this much effort": ``output_config.effort`` works with thinking off, and
    Anthropic's budgets are exact tokens, not levels.
    """

    #: Whether the client turned thinking on (``enabled`` or ``adaptive``).
    thinking: bool
    #: ``thinking.budget_tokens``, exactly (None: adaptive, or thinking off).
    budget: int | None = None
    #: Whether it asked for adaptive thinking (``{"type": "adaptive"}``).
    adaptive: bool = False
    #: ``thinking.display`` as sent (``summarized`` or ``omitted``), else None.
    display: str | None = None
    #: ``output_config.effort`` as sent (``low`` to ``max``), else None.
    effort: str | None = None
    #: Whether its tools' ``strict`` follows Anthropic's rules, where a property may be
    #: optional (OpenAI's strict mode refuses such a schema; its adapter sends it loose).
    anthropic_strict: bool = False
    #: The ``anthropic-beta`` features it sent (``context-1m-2025-08-07``, ...), for the Claude
    #: API; other providers have no such switch (and no such features).
    betas: tuple[str, ...] = ()
    #: Whether it turned thinking off (``{"type": "disabled"}``, Claude's default): a provider
    #: whose models think unless told not to (Gemini 2.5 and 3, Ollama's thinking models) is
    #: told (a model that cannot stop gets its least thinking, and no thoughts are asked for);
    #: a provider without the switch has nothing to turn off.
    thinking_off: bool = False
    #: Whether the request's ``user`` is the client's ``metadata.user_id`` (Claude Code sends
    #: one on every request): an identifier for the provider's abuse detection that changes
    #: nothing in the answer, so a provider without an end-user field goes without it, and
    #: ``x-uniinfer-dropped-params`` names it, with no setting needed.
    user_id: bool = False
    #: The Claude API's fields that OpenAI's shape has no place for, as (Messages path, value)
    #: pairs in the order sent: ``inference_geo``, ``speed``, ``service_tier`` and a tool's
    #: ``tools.N.eager_input_streaming`` / ``tools.N.input_examples``. An adapter that speaks the
    #: Claude API sends them back where they came from
    #: (:attr:`~uniinfer.providers.base.ProviderAdapter.claude_fields`); for any other provider
    #: :mod:`uniinfer.fitting` decides (left out and named, or refused).
    claude_fields: tuple[tuple[str, Any], ...] = ()


class _IntentChatRequest(ChatRequest):
    """A :class:`ChatRequest` with a :attr:`~ChatRequest.messages_intent`.

    A subclass, so that the private attribute costs nothing on every other
    request: pydantic initialises private attributes after each validation.
    """

    _intent: MessagesIntent | None = PrivateAttr(default=None)

    @property
    def messages_intent(self) -> MessagesIntent | None:
        return self._intent


class _FieldError(ValueError):
    """A cross-field check failure that still names the field it is about."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _field_error(param: str, message: str) -> _FieldError:
    return _FieldError(param, message)


def _check_stop(stop: str | list[str] | None) -> None:
    if isinstance(stop, list) and len(stop) > 4:
        raise _field_error("stop", "'stop' may hold at most 4 sequences")


def _check_tool_choice(tools: list[Tool] | None, choice: ToolChoice | None) -> None:
    if choice is None:
        return
    if not tools:  # as the OpenAI API answers, whichever provider the request is routed to
        raise _field_error("tool_choice", "'tool_choice' is only allowed when 'tools' are specified")
    if isinstance(choice, str):
        return
    names = {t.function.name for t in tools or ()}
    if choice.function.name not in names:
        raise _field_error(
            "tool_choice",
            f"'tool_choice' names function '{_cut(choice.function.name)}', which is not in 'tools'",
        )


def _check_tool_messages(messages: list[Any]) -> None:
    """Each tool call of an assistant message is answered, once, by the tool messages right
    after it (OpenAI's rule: "An assistant message with 'tool_calls' must be followed by tool
    messages responding to each 'tool_call_id'"; Claude's and Gemini's are the same), and a
    tool message answers a call of the assistant message before it."""
    open_ids: dict[str, None] = {}  # the calls still unanswered, in order
    answered: set[str] = set()
    last = 0  # the assistant message that made them
    for i, msg in enumerate(messages):
        if isinstance(msg, ToolMessage):
            call = msg.tool_call_id
            if call not in open_ids:
                why = (
                    "answers a 'tool_calls' id answered before it"
                    if call in answered
                    else ("answers no 'tool_calls' id of a preceding assistant message")
                )
                raise _field_error(
                    f"messages[{i}].tool_call_id",
                    f"messages[{i}] has role 'tool' but {why} (tool_call_id '{_cut(call)}')",
                )
            del open_ids[call]
            answered.add(call)
            continue
        _all_answered(open_ids, last)
        answered.clear()
        if isinstance(msg, AssistantMessage) and msg.tool_calls:
            open_ids, last = dict.fromkeys(c.id for c in msg.tool_calls), i
            if len(open_ids) < len(msg.tool_calls):
                raise _field_error(
                    f"messages[{i}].tool_calls", f"messages[{i}] holds two tool calls with one id"
                )
    _all_answered(open_ids, last)


def _all_answered(open_ids: dict[str, None], i: int) -> None:
    if open_ids:
        ids = ", ".join(f"'{_cut(call)}'" for call in list(open_ids)[:4])
        raise _field_error(
            f"messages[{i}].tool_calls",
            f"messages[{i}] has 'tool_calls' not answered by the tool messages right after it "
            f"(tool_call_id {ids}): each call needs a message with role 'tool' and its id",
        )


def _cut(text: str, limit: int = 64) -> str:
    """A caller's ``text`` quoted in an error, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


# --- response ------------------------------------------------------------------


class ResponseMessage(BaseModel):
    model_config = _RESPONSE
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None
    _reasoning_name = model_validator(mode="before")(staticmethod(_reasoning_named))
    annotations: list[dict[str, Any]] | None = None
    #: The answer's signed thinking blocks, in order (Anthropic's; see :class:`SignedThinking`):
    #: not in OpenAI's format, so never serialised. Read by the Anthropic Messages ingress.
    signed_thinking: list[SignedThinking] | None = Field(default=None, exclude=True)
    #: The answer's text pieces (``content`` is their join), tool calls and signed thinking in
    #: the order its provider sent them, when OpenAI's shape (thinking, text, then the tool
    #: calls) loses it: Claude's (API, Vertex, Bedrock) content blocks or Gemini's parts with a
    #: text after a tool call, say. Not in OpenAI's format, so never serialised. Read, through
    #: :meth:`ordered_blocks`, by the Anthropic Messages and Responses ingresses.
    content_blocks: list[AnswerBlock] | None = Field(default=None, exclude=True)

    @model_serializer(mode="wrap")
    def _required(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _with_nulls(handler(self), ("content", "refusal"))

    def ordered_blocks(self) -> list[AnswerBlock] | None:
        """:attr:`content_blocks`, while they still are the message's text, tool calls and signed
        thinking (a stage may have rewritten those, or added a refusal), else None."""
        blocks = self.content_blocks
        if blocks is None or self.refusal:
            return None
        text = "".join(b for b in blocks if isinstance(b, str))
        calls = [b for b in blocks if isinstance(b, ToolCall)]
        signed = [b for b in blocks if isinstance(b, SignedThinking)]
        if (
            text != (self.content or "")
            or calls != (self.tool_calls or [])
            or signed != (self.signed_thinking or [])
        ):
            return None
        return blocks


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
#: An answer's finish reason: OpenAI's, or another an OpenAI-compatible server sends (vLLM's
#: ``abort``...), passed on as it came rather than failing the answer.
AnyFinishReason = FinishReason | str


class ChatChoice(BaseModel):
    model_config = _RESPONSE
    index: int = 0
    message: ResponseMessage
    finish_reason: AnyFinishReason | None = None
    logprobs: dict[str, Any] | None = None
    #: The stop sequence that ended the answer, when the provider says which (Anthropic does);
    #: not in OpenAI's format, so never serialised. Read by the Anthropic Messages ingress.
    stop_sequence: str | None = Field(default=None, exclude=True)

    @model_serializer(mode="wrap")
    def _required(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _with_nulls(handler(self), ("finish_reason", "logprobs"))


class ChatResponse(BaseModel):
    """``chat.completion`` (OpenAI ``CreateChatCompletionResponse``)."""

    model_config = _RESPONSE
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# --- stream chunk --------------------------------------------------------------


class FunctionCallDelta(BaseModel):
    model_config = _RESPONSE
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    model_config = _RESPONSE
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class ChunkDelta(BaseModel):
    model_config = _RESPONSE
    role: Literal["assistant"] | None = None
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None
    _reasoning_name = model_validator(mode="before")(staticmethod(_reasoning_named))
    #: Signed thinking (see :class:`SignedThinking`), never serialised: a ``thinking`` entry
    #: carries the signature that completes the thinking streamed so far as
    #: ``reasoning_content`` (Anthropic's ``signature_delta``; its text stays empty), a
    #: ``redacted_thinking`` entry is a whole block.
    signed_thinking: list[SignedThinking] | None = Field(default=None, exclude=True)


class ChunkChoice(BaseModel):
    model_config = _RESPONSE
    index: int = 0
    delta: ChunkDelta
    finish_reason: AnyFinishReason | None = None
    logprobs: dict[str, Any] | None = None
    #: As :attr:`ChatChoice.stop_sequence`, on the chunk that carries the finish reason.
    stop_sequence: str | None = Field(default=None, exclude=True)

    @model_serializer(mode="wrap")
    def _required(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _with_nulls(handler(self), ("finish_reason",))


class ChatChunk(BaseModel):
    """``chat.completion.chunk`` (OpenAI ``CreateChatCompletionStreamResponse``)."""

    model_config = _RESPONSE
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    #: Usage a provider reported before its stream's end (Anthropic's ``message_start``: the
    #: input counts; Gemini's running ``usageMetadata``); the final usage chunk still carries
    #: the totals. Not in OpenAI's format, so never serialised. Read by the Anthropic Messages
    #: ingress for its ``message_start``, and what a stream cut before its end is metered at.
    early_usage: Usage | None = Field(default=None, exclude=True)


class RawEvents:
    """``chat.completion.chunk`` events still in the SSE an OpenAI-format provider sent.

    One or more events, each ``data: {chunk}`` on one line and a blank line
    after it, exactly as they are written to an OpenAI-format caller: the
    server's Chat Completions endpoint writes :attr:`sse` as it is, the
    WebSocket endpoint takes each event's JSON (:meth:`payloads`), and a
    caller who wants objects models them (``ChatStream`` does). So a relayed run
    of events costs one check instead of a validation and a re-serialisation
    each. Decoders make one only of events they checked are JSON objects with
    a ``choices`` list and no usage, error or vocabulary to rewrite (see the
    OpenAI stream decoder), or of a usage chunk (empty ``choices``) whose
    validated usage it carries.
    """

    __slots__ = ("sse", "usage")

    def __init__(self, sse: bytes, usage: Usage | None = None) -> None:
        #: ``data: {...}\n\n`` once or more; no other newline (JSON keeps them escaped).
        self.sse = sse
        #: Set on a usage chunk only (its ``choices`` are empty).
        self.usage = usage

    @classmethod
    def of(cls, json: bytes, usage: Usage | None = None) -> RawEvents:
        """One event of the JSON ``json`` (which must hold no raw newline)."""
        return cls(b"data: " + json + b"\n\n", usage)

    def payloads(self) -> list[bytes]:
        """Each event's JSON."""
        return self.sse[6:-2].split(b"\n\ndata: ")

    def __repr__(self) -> str:
        return f"RawEvents({self.sse!r})"


#: What a stream decoder yields: modelled chunks, or events passed through as the provider sent them.
StreamItem = ChatChunk | RawEvents
