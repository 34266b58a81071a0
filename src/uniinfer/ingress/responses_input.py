"""Responses input items -> Chat messages (part of :mod:`uniinfer.ingress.responses`).

``message`` items become messages of their role, ``function_call`` items
assistant ``tool_calls`` (merged into the assistant turn they follow; an assistant
``message`` between the calls of one turn, as Claude interleaves them, joins that
turn too, its order kept for the providers that send a turn as it was),
``function_call_output`` items ``tool`` messages; a ``reasoning`` item goes with the assistant
turn after it: its summary as the turn's ``reasoning_content`` (DeepSeek's and Kimi's thinking
models require it back in a tool loop), and its ``encrypted_content``, when uniinfer wrote it
(Claude's signed thinking, :mod:`uniinfer.ingress.responses_output`), as the turn's signed
thinking (Claude keeps thinking in a tool loop only with it); another's is dropped. Calls and
outputs must pair up, as the real API requires: an output
answers a call of the assistant turn just before it, and every call of a turn
is answered before the conversation moves on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from uniinfer.errors import InvalidRequestError, UnsupportedFeatureError
from uniinfer.ingress.responses_output import thinking_of
from uniinfer.ingress.responses_request import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputFile,
    InputImage,
    InputText,
    MessageItem,
    OtherItem,
    OutputText,
    ReasoningItem,
    RefusalPart,
    ResponsesRequest,
)
from uniinfer.types.chat import (
    AssistantMessage,
    DeveloperMessage,
    FilePart,
    FunctionCall,
    ImagePart,
    ImageURL,
    Message,
    SignedThinking,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolMessage,
    UserMessage,
)

__all__ = ["to_messages"]


def to_messages(req: ResponsesRequest) -> list[Message]:
    """``instructions`` and ``input`` as Chat messages (a 400 naming the item for what cannot be)."""
    return _Messages(req).build()


class _Messages:
    """Input items -> Chat messages, checking that function calls and outputs pair up."""

    def __init__(self, req: ResponsesRequest) -> None:
        self.req = req
        self.messages: list[Message] = []
        #: call ids of the latest assistant turn -> whether an output answered them yet
        self.calls: dict[str, bool] = {}
        #: a reasoning item's summary and signed thinking, for the assistant turn after it
        self.reasoning: tuple[str, list[SignedThinking]] | None = None

    def build(self) -> list[Message]:
        req = self.req
        if req.instructions:
            self.messages.append(SystemMessage(role="system", content=req.instructions))
        if isinstance(req.input, str):
            self.messages.append(UserMessage(role="user", content=req.input))
        else:
            for i, item in enumerate(req.input):
                self._item(i, item)
        self._check_answered()
        if not self.messages:
            raise InvalidRequestError("'input' must hold at least one message.", param="input")
        return self.messages

    def _item(self, i: int, item: BaseModel) -> None:
        if isinstance(item, FunctionCallItem):
            self._call(i, item)
        elif isinstance(item, FunctionCallOutputItem):
            self._output(i, item)
        elif isinstance(item, MessageItem):
            last = self.messages[-1] if self.messages else None
            if (
                item.role == "assistant"
                and isinstance(last, AssistantMessage)
                and not all(self.calls.values())
            ):
                # text between the calls of one turn (Claude's), sent back as the output had it
                self.messages[-1] = _joined(last, _assistant(i, item))
                return
            self._check_answered()
            self.messages.append(self._with_reasoning(_message(i, item)))
        elif isinstance(item, OtherItem):
            why = (
                "it refers to stored state"
                if item.type == "item_reference"
                else "it belongs to a hosted tool"
            )
            raise UnsupportedFeatureError(
                f"Input items of type '{item.type}' are not supported: {why}.", param=f"input[{i}].type"
            )
        elif isinstance(item, ReasoningItem):
            summary = "".join(str(part.get("text") or "") for part in item.summary)
            self.reasoning = (summary, thinking_of(item.encrypted_content))

    def _with_reasoning(self, msg: Message) -> Message:
        """``msg`` with the reasoning item before it, when it is the assistant turn that follows."""
        reasoning, self.reasoning = self.reasoning, None
        if reasoning is None or not isinstance(msg, AssistantMessage):
            return msg
        summary, signed = reasoning
        update: dict[str, Any] = {"reasoning_content": summary or None}
        if signed:  # model_copy: signed_thinking is no field a client may set (validation refuses it)
            update["signed_thinking"] = signed
        return msg.model_copy(update=update)

    def _call(self, i: int, item: FunctionCallItem) -> None:
        call = ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments))
        last = self.messages[-1] if self.messages else None
        if isinstance(last, AssistantMessage):  # no output came after it: still the same turn
            if item.call_id in self.calls:
                raise InvalidRequestError(
                    f"Duplicate function call id '{item.call_id}'.", param=f"input[{i}].call_id"
                )
            last.tool_calls = [*(last.tool_calls or ()), call]
            if last.content_blocks is not None:  # a turn whose text and calls interleave
                last.content_blocks = [*last.content_blocks, call]
        else:
            self._check_answered()
            self.calls = {}
            self.messages.append(self._with_reasoning(AssistantMessage(role="assistant", tool_calls=[call])))
        self.calls[item.call_id] = False

    def _output(self, i: int, item: FunctionCallOutputItem) -> None:
        if item.call_id not in self.calls:
            raise InvalidRequestError(
                f"No tool call found for function call output with call_id {item.call_id}.",
                param=f"input[{i}].call_id",
            )
        self.calls[item.call_id] = True
        self.messages.append(
            ToolMessage(role="tool", tool_call_id=item.call_id, content=_tool_output(i, item))
        )

    def _check_answered(self) -> None:
        missing = [call_id for call_id, answered in self.calls.items() if not answered]
        if missing:
            raise InvalidRequestError(f"No tool output found for function call {missing[0]}.", param="input")
        self.calls = {}


def _message(i: int, item: MessageItem) -> Message:
    if item.role == "assistant":
        return _assistant(i, item)
    if isinstance(item.content, str):
        content: Any = item.content
    else:
        content = [_part(f"input[{i}].content[{j}]", part, item.role) for j, part in enumerate(item.content)]
    if item.role == "user":
        return UserMessage(role="user", content=content)
    if item.role == "system":
        return SystemMessage(role="system", content=content)
    return DeveloperMessage(role="developer", content=content)


def _assistant(i: int, item: MessageItem) -> AssistantMessage:
    if isinstance(item.content, str):
        return AssistantMessage(role="assistant", content=item.content)
    texts: list[str] = []
    refusals: list[str] = []
    for j, part in enumerate(item.content):
        if isinstance(part, OutputText | InputText):
            texts.append(part.text)
        elif isinstance(part, RefusalPart):
            refusals.append(part.refusal)
        else:
            raise _bad_part(f"input[{i}].content[{j}].type", part.type, ("output_text", "refusal"))
    return AssistantMessage(
        role="assistant",
        content="".join(texts),
        refusal="".join(refusals) or None,
    )


def _joined(turn: AssistantMessage, more: AssistantMessage) -> AssistantMessage:
    """``turn`` with ``more``'s text after its calls: the text parts in order, and the whole
    turn's order kept in ``content_blocks`` for the providers that send a turn as it was (Claude,
    Gemini; OpenAI's shape has the text, then the calls)."""
    texts = [*_text_parts(turn.content), *_text_parts(more.content)]
    order = turn.content_blocks or [*_text_parts(turn.content), *(turn.tool_calls or ())]
    refusal = "".join(r for r in (turn.refusal, more.refusal) if r) or None
    # model_copy: content_blocks is no field a client may set (it refuses validated input)
    return turn.model_copy(
        update={
            "content": texts or None,
            "refusal": refusal,
            "content_blocks": [*order, *_text_parts(more.content)],
        }
    )


def _text_parts(content: str | list[Any] | None) -> list[TextPart]:
    if isinstance(content, str):
        return [TextPart(type="text", text=content)] if content else []
    return [part for part in content or () if isinstance(part, TextPart)]


def _part(where: str, part: BaseModel, role: str) -> TextPart | ImagePart | FilePart:
    if isinstance(part, InputText):
        return TextPart(type="text", text=part.text, prompt_cache_breakpoint=part.prompt_cache_breakpoint)
    if isinstance(part, InputImage) and role == "user":
        return _image(where, part)
    if isinstance(part, InputFile) and role == "user":
        return _file(where, part)
    allowed = ("input_text", "input_image", "input_file") if role == "user" else ("input_text",)
    raise _bad_part(f"{where}.type", str(getattr(part, "type", "")), allowed)


def _image(where: str, part: InputImage) -> ImagePart:
    if not part.image_url and part.file_id:
        raise UnsupportedFeatureError(
            "Images by 'file_id' are not supported (uniinfer has no Files API): send 'image_url' "
            "(an https or data: URL).",
            param=f"{where}.file_id",
        )
    if not part.image_url:
        raise InvalidRequestError(
            "An 'input_image' needs a non-empty 'image_url' (an https or data: URL).",
            param=f"{where}.image_url",
        )
    detail: Literal["auto", "low", "high"] = "high" if part.detail == "original" else part.detail
    return ImagePart(
        type="image_url",
        image_url=ImageURL(url=part.image_url, detail=detail),
        prompt_cache_breakpoint=part.prompt_cache_breakpoint,
    )


def _file(where: str, part: InputFile) -> FilePart:
    if part.file_url is not None:
        raise UnsupportedFeatureError("Files by 'file_url' are not supported.", param=f"{where}.file_url")
    fields = {"file_id": part.file_id, "filename": part.filename, "file_data": part.file_data}
    return FilePart(
        type="file",
        file={k: v for k, v in fields.items() if v is not None},
        prompt_cache_breakpoint=part.prompt_cache_breakpoint,
    )


def _tool_output(i: int, item: FunctionCallOutputItem) -> str | list[TextPart]:
    if isinstance(item.output, str):
        return item.output
    parts: list[TextPart] = []
    for j, part in enumerate(item.output):
        if not isinstance(part, InputText):
            raise UnsupportedFeatureError(
                "Function call outputs can hold only text behind uniinfer (Chat tool messages are text).",
                param=f"input[{i}].output[{j}].type",
            )
        parts.append(TextPart(type="text", text=part.text))
    return parts


def _bad_part(param: str, kind: str, allowed: tuple[str, ...]) -> InvalidRequestError:
    values = ", ".join(f"'{v}'" for v in allowed)
    return InvalidRequestError(f"Invalid value: '{kind}'. Supported values are: {values}.", param=param)
