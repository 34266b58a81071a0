"""The Anthropic Messages request as pydantic models that validate like the real API.

https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/api/messages-count-tokens. Unknown fields are
rejected (``extra="forbid"``, as the API does), and every failure is a 400
whose message starts with the field path in the API's own style, tags of
unions included: ``messages.0.content.1.source.base64.media_type: Input
should be ...``, ``tools.0.custom.input_schema.type: ...``.

A ``content`` (or ``system``, or ``tool_result.content``) string is taken as
the one text block it stands for, so the models only ever hold block lists.
Shape is checked by pydantic; the rules across fields (block types per role,
``tool_use``/``tool_result`` pairing, ``tool_choice`` against ``tools``, the
thinking budget below ``max_tokens``) by :func:`check_conversation`, with the
API's messages.

Structured outputs: ``output_config.format`` (``{"type": "json_schema", "schema":
{...}}``) and a custom tool's ``strict``, as
https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs documents them;
the beta's top-level ``output_format`` (deprecated, which the API still accepts) is taken
for ``output_config.format``, and sending both is a 400 naming ``output_format``.

Automatic prompt caching: a top-level ``cache_control`` stands for a breakpoint on the last
cacheable block of the request (https://platform.claude.com/docs/en/build-with-claude/prompt-caching:
"the system applies the cache breakpoint to the last cacheable block"), and is put there when
the request is parsed: the last text, image, document, ``tool_use`` or ``tool_result`` block of
the messages (thinking blocks take none; a block with its own breakpoint keeps it). Every upstream then sees an ordinary breakpoint: a
Claude model (API, Vertex, Bedrock) caches there as the API would have, the rest as they
always do.

Server tools (``web_search_*``, ``bash_*``, ``text_editor_*``, ``computer_*``...)
run on Anthropic's side and have no equivalent behind a gateway: a 400
:class:`~uniinfer.errors.UnsupportedFeatureError` naming ``tools.N.type``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError
from uniinfer.types.chat import FIRST, MAX_MODEL_NAME

__all__ = [
    "ContentBlock",
    "CountTokensRequest",
    "DocumentBlock",
    "ImageBlock",
    "InputMessage",
    "MessagesRequest",
    "RedactedThinkingBlock",
    "TextBlock",
    "ThinkingBlock",
    "ToolResultBlock",
    "ToolUseBlock",
    "parse_anthropic",
]

_STRICT = ConfigDict(extra="forbid")
#: A tool call id: Anthropic's are ``[a-zA-Z0-9_-]``, but the gateway hands its client the ids of
#: every provider (Kimi's ``functions.get:0``) and must take them back; the Claude adapters
#: rewrite them to Anthropic's alphabet on the way out.
_ID = r"^\S+$"
_TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
#: Block types each role may send (https://docs.anthropic.com/en/api/messages).
_ROLE_BLOCKS = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}


def _as_blocks(value: Any) -> Any:
    """A string stands for one text block (none when empty)."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}] if value else []
    return value


class CacheControl(BaseModel):
    model_config = _STRICT
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    #: Citations of an earlier answer; accepted and not passed on.
    citations: Annotated[list[dict[str, Any]], FIRST] | None = None


class Base64ImageSource(BaseModel):
    model_config = _STRICT
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class URLSource(BaseModel):
    model_config = _STRICT
    type: Literal["url"]
    url: str = Field(min_length=1)


class ImageBlock(BaseModel):
    model_config = _STRICT
    type: Literal["image"]
    source: Annotated[Base64ImageSource | URLSource, Field(discriminator="type")]
    cache_control: CacheControl | None = None


class Base64PDFSource(BaseModel):
    model_config = _STRICT
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str = Field(min_length=1)


class PlainTextSource(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ContentSource(BaseModel):
    model_config = _STRICT
    type: Literal["content"]
    content: Annotated[
        list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]],
        FIRST,
        BeforeValidator(_as_blocks),
    ]


class FileSource(BaseModel):
    model_config = _STRICT
    type: Literal["file"]
    file_id: str


class DocumentBlock(BaseModel):
    model_config = _STRICT
    type: Literal["document"]
    source: Annotated[
        Base64PDFSource | PlainTextSource | ContentSource | URLSource | FileSource,
        Field(discriminator="type"),
    ]
    cache_control: CacheControl | None = None
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class DirectCaller(BaseModel):
    model_config = _STRICT
    type: Literal["direct"]


class ToolUseBlock(BaseModel):
    model_config = _STRICT
    type: Literal["tool_use"]
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: CacheControl | None = None
    #: Who called the tool, as the SDK (2.x) sends a block back: the model itself (``direct``,
    #: also what an absent caller means). A server tool's call (code execution) is refused:
    #: uniinfer runs no server tools.
    caller: DirectCaller | None = None
    #: The MCP toolset a tool belonged to, as the SDK writes it back (``null`` for a plain
    #: tool); a toolset member is refused: uniinfer has no MCP connector.
    toolset_name: None = None


class ToolResultBlock(BaseModel):
    model_config = _STRICT
    type: Literal["tool_result"]
    tool_use_id: str = Field(pattern=_ID)
    #: Text, images and documents (a PDF a tool read: Claude Code's Read tool sends one)
    content: Annotated[
        list[Annotated[TextBlock | ImageBlock | DocumentBlock, Field(discriminator="type")]],
        FIRST,
        BeforeValidator(_as_blocks),
    ] = Field(default_factory=list)
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(BaseModel):
    model_config = _STRICT
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(BaseModel):
    model_config = _STRICT
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class InputMessage(BaseModel):
    model_config = _STRICT
    role: Literal["user", "assistant"]
    content: Annotated[list[ContentBlock], FIRST, BeforeValidator(_as_blocks)]


# --- tools -----------------------------------------------------------------------


class InputSchema(BaseModel):
    """A JSON schema whose top level is an object; everything else is kept as sent."""

    model_config = ConfigDict(extra="allow")
    type: Literal["object"]


class CustomTool(BaseModel):
    model_config = _STRICT
    type: Literal["custom"] | None = None
    name: str = Field(pattern=_TOOL_NAME)
    description: str | None = None
    input_schema: InputSchema
    cache_control: CacheControl | None = None
    strict: bool | None = None
    #: Claude API tool options (fine-grained streaming of the input; example inputs): the Claude
    #: API gets them back; for other providers see :mod:`uniinfer.fitting`.
    eager_input_streaming: bool | None = None
    input_examples: Annotated[list[dict[str, Any]], FIRST] | None = None


class ServerTool(BaseModel):
    """A tool Anthropic runs itself (``web_search_20250305``...): recognised, then refused."""

    model_config = ConfigDict(extra="allow")
    type: str
    name: str | None = None


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "custom" if kind in (None, "custom") else "server"


ToolDefinition = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")], Discriminator(_tool_kind)
]


class ToolChoiceAuto(BaseModel):
    model_config = _STRICT
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(BaseModel):
    model_config = _STRICT
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(BaseModel):
    model_config = _STRICT
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(BaseModel):
    model_config = _STRICT
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


# --- thinking and output ------------------------------------------------------------


class ThinkingEnabled(BaseModel):
    model_config = _STRICT
    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024, strict=True)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(BaseModel):
    model_config = _STRICT
    type: Literal["disabled"]


class ThinkingAdaptive(BaseModel):
    model_config = _STRICT
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


Thinking = Annotated[ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")]


class JSONOutputFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = _STRICT
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONOutputFormat | None = None


class Metadata(BaseModel):
    model_config = _STRICT
    user_id: str | None = Field(default=None, max_length=256)


# --- requests ----------------------------------------------------------------------


class CountTokensRequest(BaseModel):
    """``POST /v1/messages/count_tokens``: the conversation, without generation settings."""

    model_config = _STRICT
    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    messages: Annotated[list[InputMessage], FIRST] = Field(min_length=1)
    system: Annotated[list[TextBlock], FIRST, BeforeValidator(_as_blocks)] | None = None
    tools: Annotated[list[ToolDefinition], FIRST] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    #: The structured-outputs beta's name for ``output_config.format`` (header
    #: ``anthropic-beta: structured-outputs-2025-11-13``): deprecated, still accepted by the API.
    output_format: JSONOutputFormat | None = None
    #: Automatic prompt caching: placed on the last cacheable block (see the module docstring).
    cache_control: CacheControl | None = None

    @model_validator(mode="after")
    def _place_automatic_breakpoint(self) -> CountTokensRequest:
        if self.cache_control is not None:
            block = _last_cacheable(self)
            if block is not None and block.cache_control is None:
                block.cache_control = self.cache_control
        return self

    def json_output_format(self) -> JSONOutputFormat | None:
        """``output_config.format``, or the deprecated ``output_format`` standing for it."""
        fmt = self.output_config.format if self.output_config is not None else None
        return fmt if fmt is not None else self.output_format


class MessagesRequest(CountTokensRequest):
    """``POST /v1/messages``."""

    max_tokens: int = Field(ge=1, strict=True)
    metadata: Metadata | None = None
    stop_sequences: Annotated[list[str], FIRST] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, strict=True)
    service_tier: Literal["auto", "standard_only"] | None = None
    #: Where the Claude API runs the model (data residency), and its fast mode: the Claude API
    #: gets them as sent; for other providers see :mod:`uniinfer.fitting`.
    inference_geo: str | None = Field(default=None, min_length=1)
    speed: Literal["standard", "fast"] | None = None


R = TypeVar("R", bound=CountTokensRequest)

#: Blocks that take a ``cache_control`` breakpoint (thinking blocks take none).
_CacheableBlock = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock


def _last_cacheable(request: CountTokensRequest) -> _CacheableBlock | None:
    """Where a top-level ``cache_control`` goes: the last block of the messages that takes one
    (every user message has one: its blocks all take one, and it may not be empty)."""
    for msg in reversed(request.messages):
        for block in reversed(msg.content):
            if isinstance(block, _CacheableBlock):
                return block
    return None


def parse_anthropic(model: type[R], data: Any) -> R:
    """Validate a request body; the first problem is a 400 naming the field the API's way."""
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    check_conversation(request)
    return request


def _validation_error(exc: ValidationError) -> InvalidRequestError:
    err = exc.errors(include_url=False, include_input=False)[0]
    path = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return _invalid(path, message)


def _invalid(path: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{path}: {message}" if path else message, param=path or None)


def check_conversation(request: CountTokensRequest) -> None:
    """The rules that span fields, with the real API's wording."""
    if request.output_format is not None and request.output_config and request.output_config.format:
        raise _invalid(
            "output_format",
            "`output_format` is the deprecated name of `output_config.format`; send only `output_config.format`",
        )
    names = _check_tools(request.tools)
    _check_tool_choice(request.tool_choice, names)
    _check_messages(request.messages)
    if (
        isinstance(request, MessagesRequest)
        and isinstance(request.thinking, ThinkingEnabled)
        and request.thinking.budget_tokens >= request.max_tokens
    ):
        raise _invalid("max_tokens", "`max_tokens` must be greater than `thinking.budget_tokens`")


def _check_tools(tools: Sequence[CustomTool | ServerTool] | None) -> list[str]:
    names: list[str] = []
    for i, tool in enumerate(tools or ()):
        if isinstance(tool, ServerTool):
            raise UnsupportedFeatureError(
                f"tools.{i}.type: the server tool '{tool.type}' runs on Anthropic's side and is not "
                "available through uniinfer; declare a custom tool (name, description, input_schema)",
                param=f"tools.{i}.type",
            )
        names.append(tool.name)
    if len(set(names)) != len(names):
        raise _invalid("tools", "Tool names must be unique.")
    return names


def _check_tool_choice(choice: Any, names: list[str]) -> None:
    if choice is None:
        return
    if not names:
        raise _invalid("tool_choice", "tool_choice may only be specified while providing tools.")
    if isinstance(choice, ToolChoiceTool) and choice.name not in names:
        raise _invalid("tool_choice.tool.name", f"Tool '{choice.name}' not found in provided tools")


def _check_messages(messages: list[InputMessage]) -> None:
    last = len(messages) - 1
    for i, msg in enumerate(messages):
        allowed = _ROLE_BLOCKS[msg.role]
        for j, block in enumerate(msg.content):
            if block.type not in allowed:
                raise _invalid(
                    f"messages.{i}.content.{j}.type",
                    f"'{block.type}' blocks are not allowed in '{msg.role}' messages",
                )
            if isinstance(block, TextBlock) and not block.text:
                raise _invalid(f"messages.{i}.content.{j}.text", "text content blocks must be non-empty")
        if not msg.content and not (i == last and msg.role == "assistant"):
            raise _invalid(
                f"messages.{i}",
                "all messages must have non-empty content except for the optional final assistant message",
            )
    _check_tool_pairs(messages)


def _check_tool_pairs(messages: list[InputMessage]) -> None:
    """Every tool_result answers a tool_use of the turn before; every tool_use is answered next.

    Consecutive messages of one role form one turn, as the API combines them.
    """
    offered: set[str] = set()
    pending: dict[str, int] = {}  # tool_use id -> index of the message that made it
    for i, msg in enumerate(messages):
        if msg.role == "assistant":
            if i and messages[i - 1].role == "user":
                offered, pending = set(), _unanswered(pending)
            for block in msg.content:
                if isinstance(block, ToolUseBlock):
                    offered.add(block.id)
                    pending[block.id] = i
            continue
        for j, block in enumerate(msg.content):
            if isinstance(block, ToolResultBlock):
                if block.tool_use_id not in offered:
                    raise _invalid(
                        f"messages.{i}.content.{j}",
                        f"unexpected `tool_use_id` found in `tool_result` blocks: {block.tool_use_id}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the "
                        "previous message.",
                    )
                pending.pop(block.tool_use_id, None)


def _unanswered(pending: dict[str, int]) -> dict[str, int]:
    """Raise for tool_use ids that the user turn after them left unanswered."""
    if pending:
        first = min(pending.values())
        ids = ", ".join(pending)
        raise _invalid(
            f"messages.{first}",
            f"`tool_use` ids were found without `tool_result` blocks immediately after: {ids}. "
            "Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
        )
    return {}
