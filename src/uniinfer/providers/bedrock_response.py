"""Bedrock Converse wire format: the answer, parsed into OpenAI's shape (a pure function of data).

Used by :class:`uniinfer.providers.bedrock.BedrockAdapter`; the stream decoder
(:mod:`uniinfer.providers.eventstream`) shares the usage, finish-reason and stop-sequence
readings (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html).
The request is built in :mod:`uniinfer.providers.bedrock_converse`.

``text`` -> ``content``, ``toolUse`` -> ``tool_calls``,
``reasoningContent.reasoningText`` -> ``reasoning_content``; Claude's signed reasoning (a
``reasoningText`` with its ``signature``, or ``redactedContent``) is also kept whole as the
message's :attr:`~uniinfer.types.chat.ResponseMessage.signed_thinking` (never serialised; the
Anthropic ingress hands it to its client, which sends it back). When a
text follows a call, the blocks are also kept in their order as the message's
:attr:`~uniinfer.types.chat.ResponseMessage.content_blocks` (never serialised), for the Anthropic
Messages ingress. Converse returns no id, so one is generated. Usage: ``inputTokens`` excludes
cache reads and writes, like Anthropic's ``input_tokens``
(https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html),
while ``totalTokens`` includes them: ``prompt_tokens = inputTokens +
cacheReadInputTokens + cacheWriteInputTokens``, the cache numbers are kept in
the details and ``total_tokens`` is ``totalTokens``, all as reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from uniinfer.errors import ProviderError
from uniinfer.providers.base import chunk_id
from uniinfer.providers.translation import add_answer_text, answer_order
from uniinfer.types import ChatResponse, Usage, chat
from uniinfer.types.chat import AnswerBlock, ChatChoice, FinishReason, FunctionCall, ToolCall

__all__ = ["STOP_SEQUENCE_PATH", "converse_response", "finish_reason", "matched_stop", "usage"]

Json = dict[str, Any]

# StopReason: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_MessageStopEvent.html
_FINISH: Mapping[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: StopReasons that mean the model produced an answer that could not be used.
_MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})


#: The JSON pointer into Claude's own response that Converse returns on request
#: (``additionalModelResponseFieldPaths``): the stop sequence that ended the answer.
STOP_SEQUENCE_PATH = "/stop_sequence"


def matched_stop(data: Mapping[str, Any]) -> str | None:
    """The stop sequence a Converse response (or its ``messageStop`` event) says ended it."""
    fields = data.get("additionalModelResponseFields")
    found = fields.get("stop_sequence") if isinstance(fields, dict) else None
    return found if isinstance(found, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage(raw: Any) -> Usage:
    """``TokenUsage`` -> :class:`Usage` (cache reads and writes added to the prompt, see above)."""
    if not isinstance(raw, dict):
        raise TypeError("usage is not an object")
    read, write = _int(raw.get("cacheReadInputTokens")), _int(raw.get("cacheWriteInputTokens"))
    prompt = (_int(raw.get("inputTokens")) or 0) + (read or 0) + (write or 0)
    completion = _int(raw.get("outputTokens")) or 0
    return Usage.of(prompt, completion, cached=read, cache_write=write, total=_int(raw.get("totalTokens")))


def finish_reason(reason: Any, provider: str) -> FinishReason:
    """OpenAI's finish reason for a StopReason; a malformed answer is a (retryable) provider error."""
    if reason in _MALFORMED:
        raise ProviderError(
            f"{provider}: the model's answer was malformed (stopReason {reason}); a retry may succeed",
            provider=provider,
        )
    return _FINISH.get(str(reason), "stop")


def converse_response(data: Any, model: str, provider: str = "bedrock") -> ChatResponse:
    """A Converse response body (decoded JSON); shape errors raise KeyError/TypeError."""
    texts: list[str] = []
    thoughts: list[str] = []
    signed: list[chat.SignedThinking] = []
    calls: list[ToolCall] = []
    blocks: list[AnswerBlock] = []  # texts (adjacent ones joined, empty ones left out), calls, signed
    for block in data["output"]["message"]["content"]:
        if "text" in block:
            texts.append(block["text"])
            add_answer_text(blocks, block["text"])
        elif "toolUse" in block:
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            calls.append(
                ToolCall(id=use["toolUseId"], function=FunctionCall(name=use["name"], arguments=arguments))
            )
            blocks.append(calls[-1])
        elif "reasoningContent" in block:
            one = _signed(block["reasoningContent"]) if "anthropic." in model else None
            thought = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            if thought:
                thoughts.append(thought)
            if one is not None:
                signed.append(one)
                blocks.append(one)
    text = "".join(texts)
    message = chat.ResponseMessage(
        content=text if texts or not calls else None,
        tool_calls=calls or None,
        reasoning_content="".join(thoughts) or None,
        signed_thinking=signed or None,
        # kept only when OpenAI's shape (signed reasoning, the text, the calls) loses their order
        content_blocks=answer_order(blocks, text, calls, signed),
    )
    raw_usage = data.get("usage")
    return ChatResponse(
        id=chunk_id(),
        model=model,
        choices=[
            ChatChoice(
                message=message,
                finish_reason=finish_reason(data.get("stopReason"), provider),
                stop_sequence=matched_stop(data),
            )
        ],
        usage=usage(raw_usage) if raw_usage is not None else None,
    )


def _signed(reasoning: Json) -> chat.SignedThinking | None:
    """Claude's signed reasoning in a ``reasoningContent`` block (of a Claude model: no other
    model's reasoning is ever sent back); None for unsigned reasoning."""
    if "redactedContent" in reasoning:
        return chat.SignedThinking(type="redacted_thinking", data=str(reasoning["redactedContent"]))
    text = reasoning.get("reasoningText") or {}
    signature = text.get("signature")
    if not signature:
        return None
    return chat.SignedThinking(
        type="thinking", thinking=str(text.get("text") or ""), signature=str(signature)
    )
