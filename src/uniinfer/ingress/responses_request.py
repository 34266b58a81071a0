"""The OpenAI Responses API request (``POST /v1/responses``, spec ``CreateResponse``) as pydantic models.

Every field of the official spec is known, so a typo is a 400 naming it
(``Unknown parameter: 'tempreature'.``, the real API's wording) instead of a
silently ignored setting. Knowing a field is not honouring it: fields that
need state uniinfer does not keep (``store: true``, ``previous_response_id``,
``conversation``, stored ``prompt`` templates, ``background``) or features
it has no counterpart for are refused by
:func:`uniinfer.ingress.responses.check_supported` with a 400
``unsupported_feature`` naming the field.

Input items and tools are discriminated by ``type`` like the real API; a
message may omit ``type`` (``EasyInputMessage``). Item and tool types of the
spec that uniinfer cannot serve (hosted tools, ``item_reference``...) parse
as :class:`OtherItem` / :class:`OtherTool` so the refusal can say why.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from uniinfer.errors import InvalidRequestError
from uniinfer.types.chat import FIRST, MAX_MODEL_NAME
from uniinfer.validation import first_problem

__all__ = [
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "FunctionTool",
    "InputFile",
    "InputImage",
    "InputText",
    "MessageItem",
    "OtherItem",
    "OtherTool",
    "OutputText",
    "ReasoningItem",
    "RefusalPart",
    "ResponsesRequest",
    "parse_responses_request",
]

#: Unknown fields and wrong types (``"stream": "yes"``, ``"temperature": "0.5"``) are a 400.
_STRICT = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
#: The spec's item and tool types uniinfer recognises and refuses: any fields, typed ``type``.
_OTHER = ConfigDict(extra="allow", strict=True)
_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
Status = Literal["in_progress", "completed", "incomplete"]


# --- content parts ----------------------------------------------------------------------


class InputText(BaseModel):
    model_config = _STRICT
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: dict[str, Any] | None = None


class InputImage(BaseModel):
    model_config = _STRICT
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"
    prompt_cache_breakpoint: dict[str, Any] | None = None


class InputFile(BaseModel):
    model_config = _STRICT
    type: Literal["input_file"]
    file_id: str | None = None
    filename: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    prompt_cache_breakpoint: dict[str, Any] | None = None


class OutputText(BaseModel):
    """Assistant text, as it comes back when a client replays a response's output."""

    model_config = _STRICT
    type: Literal["output_text"]
    text: str
    annotations: Annotated[list[dict[str, Any]], FIRST] | None = None
    logprobs: Annotated[list[dict[str, Any]], FIRST] | None = None


class RefusalPart(BaseModel):
    model_config = _STRICT
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    InputText | InputImage | InputFile | OutputText | RefusalPart, Field(discriminator="type")
]
ToolOutputPart = Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]


def _shape(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    return "list" if isinstance(value, list) else None  # None: "expected one of a string or an array"


# ``str | list[...]`` judged by the value's shape, so a bad list reports only the list's errors.
Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentPart], Tag("list"), FIRST], Discriminator(_shape)
]
ToolOutput = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ToolOutputPart], Tag("list"), FIRST], Discriminator(_shape)
]


# --- input items ------------------------------------------------------------------------


class MessageItem(BaseModel):
    """``EasyInputMessage``, ``InputMessage`` and a replayed ``OutputMessage``."""

    model_config = _STRICT
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    id: str | None = None
    status: Status | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(BaseModel):
    model_config = _STRICT
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: Status | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None


class FunctionCallOutputItem(BaseModel):
    model_config = _STRICT
    type: Literal["function_call_output"]
    #: No upper limit, where OpenAI's spec has 64: uniinfer's own call ids for Gemini 3 carry
    #: the call's thought signature (see docs/architecture.md) and come back here.
    call_id: str = Field(min_length=1)
    output: ToolOutput
    id: str | None = None
    status: Status | None = None
    name: str | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None


class ReasoningItem(BaseModel):
    """A replayed reasoning item: its summary and uniinfer's own ``encrypted_content`` go with the
    assistant turn after it (see :mod:`uniinfer.ingress.responses_input`)."""

    model_config = _STRICT
    type: Literal["reasoning"]
    id: str | None = None
    summary: Annotated[list[dict[str, Any]], FIRST] = Field(default_factory=list)
    content: Annotated[list[dict[str, Any]], FIRST] | None = None
    encrypted_content: str | None = None
    status: Status | None = None


class OtherItem(BaseModel):
    """An item type of the spec that only OpenAI's hosted tools or stored state produce."""

    model_config = _OTHER
    type: str


#: Item types of the spec that uniinfer recognises but cannot serve.
OTHER_ITEM_TYPES = frozenset(
    {
        "item_reference", "file_search_call", "computer_call", "computer_call_output", "web_search_call",
        "tool_search_call", "tool_search_output", "additional_tools", "compaction", "compaction_summary",
        "compaction_trigger", "image_generation_call", "code_interpreter_call", "local_shell_call",
        "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
        "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response",
        "mcp_call", "custom_tool_call", "custom_tool_call_output", "program", "program_output",
    }
)  # fmt: skip
_ITEM_TAGS = frozenset({"message", "function_call", "function_call_output", "reasoning"})


def _item_tag(value: Any) -> str | None:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", None)
    if kind in _ITEM_TAGS:
        return str(kind)
    return "other" if kind in OTHER_ITEM_TYPES else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_item",
        custom_error_message="not a known input item type",
    ),
]


Input = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[InputItem], Tag("list"), FIRST], Discriminator(_shape)
]


# --- tools and tool choice --------------------------------------------------------------


class FunctionTool(BaseModel):
    """``{"type": "function", "name", "description", "parameters", "strict"}``: flat, unlike Chat."""

    model_config = _STRICT
    type: Literal["function"]
    name: str = Field(pattern=_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    #: Documentation of the function's result; nothing upstream needs it.
    output_schema: dict[str, Any] | None = None
    defer_loading: bool | None = None
    allowed_callers: Annotated[list[str], FIRST] | None = None


class OtherTool(BaseModel):
    """A hosted OpenAI tool (web search, file search, MCP...) or a custom (free-form) tool."""

    model_config = _OTHER
    type: str


def _tool_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "function" if kind == "function" else "other"


ToolSpec = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[OtherTool, Tag("other")],
    Discriminator(_tool_tag),
]


class FunctionChoice(BaseModel):
    model_config = _STRICT
    type: Literal["function"]
    name: str


class AllowedTool(BaseModel):
    model_config = _OTHER
    type: str
    name: str | None = None


class AllowedToolsChoice(BaseModel):
    model_config = _STRICT
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: Annotated[list[AllowedTool], FIRST]


class OtherChoice(BaseModel):
    """Forcing a hosted tool (``{"type": "web_search_preview"}``, MCP, custom...)."""

    model_config = _OTHER
    type: str


def _choice_tag(value: Any) -> str:
    if isinstance(value, str):
        return "mode"
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return str(kind) if kind in ("function", "allowed_tools") else "other"


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("mode")]
    | Annotated[FunctionChoice, Tag("function")]
    | Annotated[AllowedToolsChoice, Tag("allowed_tools")]
    | Annotated[OtherChoice, Tag("other")],
    Discriminator(_choice_tag),
]


# --- text format and reasoning ----------------------------------------------------------


class TextFormatText(BaseModel):
    model_config = _STRICT
    type: Literal["text"]


class TextFormatJSONObject(BaseModel):
    model_config = _STRICT
    type: Literal["json_object"]


class TextFormatJSONSchema(BaseModel):
    model_config = _STRICT
    type: Literal["json_schema"]
    name: str = Field(pattern=_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = _STRICT
    format: (
        Annotated[TextFormatText | TextFormatJSONObject | TextFormatJSONSchema, Field(discriminator="type")]
        | None
    ) = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(BaseModel):
    model_config = _STRICT
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None
    mode: str | None = None
    context: Literal["auto", "current_turn", "all_turns"] | None = None


class StreamOptions(BaseModel):
    model_config = _STRICT
    include_obfuscation: bool | None = None


# --- the request ------------------------------------------------------------------------

Include = Literal[
    "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
    "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
    "reasoning.encrypted_content", "message.output_text.logprobs",
]  # fmt: skip


class ResponsesRequest(BaseModel):
    """``POST /v1/responses`` body (OpenAI ``CreateResponse``)."""

    model_config = _STRICT

    model: str = Field(min_length=1, max_length=MAX_MODEL_NAME)
    input: Input
    instructions: str | None = None
    tools: Annotated[list[ToolSpec], FIRST] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    text: TextConfig | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_output_tokens: int | None = Field(default=None, ge=16)
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(default=None, max_length=16)
    user: str | None = None
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    include: Annotated[list[Include], FIRST] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    store: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Known, refused unless unset (see check_supported).
    previous_response_id: str | None = None
    conversation: Any = None
    prompt: Any = None
    background: bool | None = None
    context_management: Any = None
    moderation: Any = None
    prompt_cache_options: Any = None
    access_programs: Any = None
    background_options: Any = None
    image: Any = None

    @field_validator("metadata")
    @classmethod
    def _short_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and any(len(key) > 64 for key in value):
            raise ValueError("metadata keys may be at most 64 characters long")
        return value


def parse_responses_request(data: dict[str, Any]) -> ResponsesRequest:
    """Validate a request body; a failure is a 400 naming the field, in the Responses API's words."""
    try:
        return ResponsesRequest.model_validate(data)
    except ValidationError as exc:
        raise _request_error(exc, data) from None


def _request_error(exc: ValidationError, data: dict[str, Any]) -> InvalidRequestError:
    problem = first_problem(exc, data, ResponsesRequest)
    param = problem.param
    if problem.kind == "extra_forbidden":
        return InvalidRequestError(f"Unknown parameter: '{param}'.", param=param)
    if problem.kind == "invalid_item":
        item = problem.value
        shown = f"'{item.get('type')}'" if isinstance(item, dict) else "a value that is not an object"
        return InvalidRequestError(
            f"Invalid value for '{param}.type': {shown} is not a known input item type.",
            param=f"{param}.type",
        )
    return InvalidRequestError(problem.message, param=param or None)
