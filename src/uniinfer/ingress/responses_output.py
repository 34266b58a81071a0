"""Chat answers -> Responses ``response`` objects (part of :mod:`uniinfer.ingress.responses`).

The builders here (items, parts, usage, the envelope echoing the request's
parameters) are shared by :func:`to_response` and the stream renderer
(:mod:`uniinfer.ingress.responses_stream`), so a streamed response ends with
exactly the object a non-streamed one returns.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import orjson

from uniinfer.ingress.responses_request import FunctionTool, ResponsesRequest
from uniinfer.types import ChatResponse, Usage
from uniinfer.types.chat import AnyFinishReason, ResponseMessage, SignedThinking, ToolCall

__all__ = [
    "envelope",
    "function_call_item",
    "message_item",
    "new_id",
    "output_items",
    "output_text_part",
    "reasoning_item",
    "response_status",
    "thinking_of",
    "to_response",
    "usage_of",
]

Json = dict[str, Any]


def new_id(prefix: str) -> str:
    """An id in OpenAI's style: ``resp_``, ``msg_``, ``fc_``, ``rs_`` and 48 hex digits."""
    return f"{prefix}_{secrets.token_hex(24)}"


def to_response(resp: ChatResponse, req: ResponsesRequest, response_id: str | None = None) -> Json:
    """The ``response`` object for a Chat answer to ``req``."""
    choice = resp.choices[0] if resp.choices else None
    finish = choice.finish_reason if choice else None
    status, details = response_status(finish)
    body = envelope(req, response_id or new_id("resp"), resp.created, resp.model, status, resp.service_tier)
    message = choice.message if choice else ResponseMessage()
    body["output"] = output_items(message, "completed" if status == "completed" else "incomplete")
    body["incomplete_details"] = details
    body["usage"] = usage_of(resp.usage)
    return body


def output_items(msg: ResponseMessage, status: str) -> list[Json]:
    """Reasoning, then the message (text and refusal), then function calls; when the provider's
    answer put text after a call (``ResponseMessage.ordered_blocks``), a message item for each
    text between the calls, in that order, as the stream renders them."""
    items: list[Json] = []
    if msg.reasoning_content or msg.signed_thinking:
        items.append(reasoning_item(new_id("rs"), msg.reasoning_content or "", msg.signed_thinking))
    ordered = msg.ordered_blocks()
    if ordered is not None:
        for block in ordered:
            if isinstance(block, str):
                items.append(message_item(new_id("msg"), [output_text_part(block)], status))
            elif isinstance(block, ToolCall):
                items.append(_function_call(block, status))
        return items  # signed thinking is Claude's own: the reasoning item above carries its text
    parts: list[Json] = []
    if msg.content or (not msg.refusal and not msg.tool_calls):
        parts.append(output_text_part(msg.content or ""))
    if msg.refusal:
        parts.append({"type": "refusal", "refusal": msg.refusal})
    if parts:
        items.append(message_item(new_id("msg"), parts, status))
    items += [_function_call(call, status) for call in msg.tool_calls or ()]
    return items


def _function_call(call: ToolCall, status: str) -> Json:
    """A call's item; ``incomplete`` with the response, as a stream cut there ends it."""
    return function_call_item(new_id("fc"), call.id, call.function.name, call.function.arguments, status)


def response_status(finish: AnyFinishReason | None) -> tuple[str, Json | None]:
    """``completed``, or ``incomplete`` with its reason when the output was cut."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def envelope(
    req: ResponsesRequest,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    service_tier: str | None = None,
) -> Json:
    """A ``response`` object without output: identity, status and the request's parameters echoed."""
    reasoning = req.reasoning
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "model": model,
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None,
        "prompt_cache_key": req.prompt_cache_key,
        "prompt_cache_retention": req.prompt_cache_retention,
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "safety_identifier": req.safety_identifier,
        "service_tier": service_tier or req.service_tier or "default",
        "store": False,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": _text_echo(req),
        "tool_choice": _choice_echo(req),
        "tools": [_tool_echo(t) for t in req.tools or () if isinstance(t, FunctionTool)],
        "top_logprobs": 0,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": "disabled",
        "usage": None,
        "user": req.user,
        "metadata": req.metadata or {},
    }


def _text_echo(req: ResponsesRequest) -> Json:
    text = req.text
    fmt = text.format if text else None
    return {
        "format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"},
        "verbosity": (text.verbosity if text else None) or "medium",
    }


def _choice_echo(req: ResponsesRequest) -> Any:
    choice = req.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump(exclude_none=True)


def _tool_echo(tool: FunctionTool) -> Json:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict,
    }


def output_text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, content: list[Json], status: str) -> Json:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_item(item_id: str, summary: str, signed: list[SignedThinking] | None = None) -> Json:
    """Reasoning text from the provider, as the item's summary; Claude's signed thinking, which
    it wants back in a tool loop, as its ``encrypted_content`` (:func:`thinking_of` reads it)."""
    parts = [{"type": "summary_text", "text": summary}] if summary else []
    item: Json = {"type": "reasoning", "id": item_id, "summary": parts}
    if signed:
        blocks = orjson.dumps([block.block() for block in signed])
        item["encrypted_content"] = THINKING_MARK + base64.b64encode(blocks).decode("ascii")
    return item


#: How uniinfer's own ``encrypted_content`` starts: signed thinking blocks, as base64 JSON.
THINKING_MARK = "uniinfer.thinking.v1:"


def thinking_of(encrypted: str | None) -> list[SignedThinking]:
    """The signed thinking blocks a reasoning item's ``encrypted_content`` holds, when uniinfer
    wrote it (:func:`reasoning_item`); none for another's (OpenAI's own), or one that does not
    read (Claude checks the signatures: a forged one only fails there)."""
    if not encrypted or not encrypted.startswith(THINKING_MARK):
        return []
    try:
        blocks = orjson.loads(base64.b64decode(encrypted[len(THINKING_MARK) :], validate=True))
        return [SignedThinking.model_validate(block) for block in blocks]
    except (ValueError, TypeError):
        return []


def usage_of(usage: Usage | None) -> Json | None:
    """Chat usage in the Responses shape (``input_tokens``, ``output_tokens``, their details)."""
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
        },
        "output_tokens": usage.output_tokens,  # reasoning included, as OpenAI counts it
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
