"""A faithful fake of Mistral's API: ``POST /v1/chat/completions`` and ``POST /v1/embeddings``.

OpenAI-like (https://docs.mistral.ai/api/), with Mistral's own validation:

- request models forbid extra fields: 422 with a FastAPI ``detail`` list nested in
  ``message`` (``{"object": "error", "message": {"detail": [{"type": "extra_forbidden",
  "loc": ["body", "seed"], "msg": "Extra inputs are not permitted", ...}]}, "type":
  "invalid_request_error", ...}``, the body quoted in github.com/Gage-Technologies/mistral-go/pull/2).
  So ``seed`` (Mistral's is ``random_seed``), ``stream_options``, ``logit_bias``,
  ``logprobs``, ``user``... are rejected, and so are message fields other than the
  schema's (``name`` on user messages, ``reasoning_content``...);
- the same 422 shape for wrong values: roles (``union_tag_invalid``), ``tool_choice``
  (auto/none/any/required or a named function), ``temperature`` >= 0, ``top_p`` 0..1,
  ``n`` >= 1, ``reasoning_effort`` none/low/medium/high, ``response_format`` types;
- tool-call ids: 400 "Tool call id was <id> but must be a-z, A-Z, 0-9, with a length of 9."
  (github.com/langchain-ai/langchain/pull/24668); every assistant ``tool_calls`` turn must
  be answered by that many tool messages ("Not the same number of function calls and
  responses", github.com/camel-ai/camel/issues/1467); a tool message after another role
  is "Unexpected role 'tool' after role 'user'" (github.com/charmbracelet/crush/issues/279);
  the last message must be user or tool, or assistant with ``prefix: true``
  (github.com/0xPlaygrounds/rig/issues/708);
- 401 ``{"message": "Unauthorized", "request_id": ...}`` from the API gateway.

Answers: ``"echo: <last user text>"`` (or of the last tool result); a tool call (id of 9
alphanumerics) with the ``tool`` mode, ``tool_choice`` any/required or a named function;
``reasoning_effort: "high"`` or a model containing ``magistral`` answers with ``content``
as a list of a thinking chunk and a text chunk. Usage (words, plus 3 per message) is on
the response, and in streams on the last chunk only, next to ``finish_reason``, without
``stream_options`` (which is rejected). A tool call streams whole in one chunk.
A model containing ``context`` fails with the context-length 400. Embeddings are
8-dimensional unless ``output_dimension`` is set. Failure modes come from
:func:`tests.fakes.common.mode_of` (429 sends ``Retry-After: 7``). Requests are recorded in
``app["requests"]`` as ``{"method", "path", "headers", "body"}``.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, Mode, abort, last_user_text, mode_of, stream_response
from tests.fakes.openai import embedding_vector, prompt_tokens

__all__ = ["API_KEY", "TOOL_ARGUMENTS", "fake_provider", "mistral_app"]

Block = dict[str, Any]

API_KEY = "mistral-fake-key-0123456789"
TOOL_ARGUMENTS = '{"location": "Paris"}'
CONTEXT_WINDOW = 32768
_CHAT_FIELDS = frozenset(
    {"model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed"}
    | {"response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n"}
    | {"prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt", "reasoning_effort"}
    | {"prompt_cache_key"}  # https://docs.mistral.ai/studio-api/conversations/advanced/prompt-caching
)
#: A content part's fields by type (extra ones forbidden, as everywhere in Mistral's schema)
_PART_FIELDS = {
    "text": {"type", "text"},
    "image_url": {"type", "image_url"},
    "document_url": {"type", "document_url", "document_name"},
    "thinking": {"type", "thinking", "closed"},
}
#: A function's fields: ``parameters`` is required (mistral-common's ``Function``)
_FUNCTION_FIELDS = {"name", "description", "parameters", "strict"}
_EMBED_FIELDS = frozenset(
    {"model", "input", "output_dimension", "output_dtype", "encoding_format", "metadata"}
)
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "prefix"},
    "tool": {"role", "content", "tool_call_id", "name"},
}
_TOOL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")
_STATUS = {
    429: ("Requests rate limit exceeded", "rate_limited"),
    500: ("Internal server error", "internal_server_error"),
    503: ("Service unavailable", "service_unavailable"),
}


class MistralError(Exception):
    """An error answered in Mistral's shape."""

    def __init__(
        self, status: int, message: Any, kind: str = "invalid_request_error", **headers: str
    ) -> None:
        super().__init__(str(message))
        self.status, self.message, self.kind, self.headers = status, message, kind, headers

    def response(self) -> web.Response:
        body = {"object": "error", "message": self.message, "type": self.kind, "param": None, "code": None}
        return web.json_response(body, status=self.status, headers=self.headers)


def unprocessable(kind: str, loc: list[Any], msg: str, value: Any = None) -> MistralError:
    """A 422 with the FastAPI/pydantic ``detail`` list."""
    detail = [{"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}]
    return MistralError(422, {"detail": detail})


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``mistral`` type against this fake."""
    return FakeProvider(
        "mistral",
        lambda: mistral_app(api_key=API_KEY),
        base_path="/v1",
        api_key=API_KEY,
        chat_model="mistral-small-latest",
        embed_model="mistral-embed",
    )


def mistral_app(*, api_key: str | None = None) -> web.Application:
    """The fake; with ``api_key`` only that key is accepted, otherwise any non-empty one."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
    app.router.add_post("/v1/chat/completions", _endpoint(_chat, api_key))
    app.router.add_post("/v1/embeddings", _endpoint(_embeddings, api_key))
    return app


def _endpoint(
    handler: Callable[[web.Request, Block], Awaitable[web.StreamResponse]], api_key: str | None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        entry = {"method": request.method, "path": request.path, "headers": request.headers, "body": body}
        request.app["requests"].append(entry)
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip() or (api_key is not None and key.strip() != api_key):
            return web.json_response({"message": "Unauthorized", "request_id": uuid.uuid4().hex}, status=401)
        try:
            if not isinstance(body, dict):
                raise unprocessable("json_invalid", [0], "JSON decode error")
            return await handler(request, body)
        except MistralError as exc:
            return exc.response()

    return run


async def _apply_mode(request: web.Request, mode: Mode, model: str) -> None:
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status is not None:
        text, kind = _STATUS.get(mode.status, (f"Invalid model: {model}", "invalid_model"))
        headers = {"Retry-After": "7"} if mode.status == 429 else {}
        raise MistralError(mode.status, text, kind, **headers)


# --- validation --------------------------------------------------------------------------------


def _extra(body: Block, allowed: set[str] | frozenset[str], loc: list[Any]) -> None:
    for name in body:
        if name not in allowed:
            raise unprocessable("extra_forbidden", [*loc, name], "Extra inputs are not permitted", body[name])


def _range(body: Block, name: str, low: float, high: float | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise unprocessable("float_type", [name], "Input should be a valid number", value)
    if value < low:
        raise unprocessable(
            "greater_than_equal", [name], f"Input should be greater than or equal to {low}", value
        )
    if high is not None and value > high:
        raise unprocessable("less_than_equal", [name], f"Input should be less than or equal to {high}", value)


def validate_chat(body: Block) -> None:
    """Check a chat body like the real API (see the module docstring)."""
    _extra(body, _CHAT_FIELDS, [])
    if not isinstance(body.get("model"), str):
        raise unprocessable("missing", ["model"], "Field required")
    _range(body, "temperature", 0)
    _range(body, "top_p", 0, 1)
    _range(body, "n", 1)
    _range(body, "max_tokens", 0)
    choice = body.get("tool_choice")
    if (
        choice is not None
        and not isinstance(choice, dict)
        and choice not in ("auto", "none", "any", "required")
    ):
        msg = "Input should be 'auto', 'none', 'any' or 'required'"
        raise unprocessable("enum", ["tool_choice"], msg, choice)
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in ("none", "low", "medium", "high"):
        msg = "Input should be 'none', 'low', 'medium' or 'high'"
        raise unprocessable("enum", ["reasoning_effort"], msg, effort)
    fmt = body.get("response_format")
    if fmt is not None and (fmt.get("type") not in ("text", "json_object", "json_schema")):
        msg = "Input should be 'text', 'json_object' or 'json_schema'"
        raise unprocessable("enum", ["response_format", "type"], msg, fmt.get("type"))
    _check_tools(body.get("tools") or [])
    _check_messages(body.get("messages"))


def _check_tools(tools: list[Block]) -> None:
    for i, tool in enumerate(tools):
        function = tool.get("function") or {}
        _extra(function, _FUNCTION_FIELDS, ["tools", i, "function"])
        if "parameters" not in function:
            raise unprocessable("missing", ["tools", i, "function", "parameters"], "Field required")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise unprocessable("missing", ["messages"], "Field required")
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in _MESSAGE_FIELDS:
            msg_text = (
                f"Input tag '{role}' found using 'role' does not match any of the expected tags: "
                "'assistant', 'system', 'tool', 'user'"
            )
            raise unprocessable("union_tag_invalid", ["messages", i], msg_text, msg)
        _extra(msg, _MESSAGE_FIELDS[role], ["messages", i, role])
        for j, part in enumerate(msg["content"] if isinstance(msg.get("content"), list) else ()):
            _extra(part, _PART_FIELDS.get(part.get("type"), {"type"}), ["messages", i, role, "content", j])
        ids = [c.get("id") for c in msg.get("tool_calls") or ()]
        if role == "tool":
            ids = [msg.get("tool_call_id")]
        for tool_id in ids:
            if not isinstance(tool_id, str) or not _TOOL_ID.match(tool_id):
                raise MistralError(
                    400, f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9."
                )
    _check_order(messages)


def _check_order(messages: list[Block]) -> None:
    pending = 0
    previous = "system"
    for msg in messages:
        role = msg["role"]
        if role == "tool":
            if pending == 0 and previous != "tool":
                raise MistralError(
                    400, f"Unexpected role 'tool' after role '{previous}'", "invalid_request_message_order"
                )
            pending -= 1
        elif pending != 0:
            raise MistralError(400, "Not the same number of function calls and responses")
        elif previous == "tool" and role != "assistant":
            # Mistral wants the assistant's turn after tool results (code 3230, as reported
            # against api.mistral.ai: "Unexpected role 'user' after role 'tool'")
            raise MistralError(
                400, f"Unexpected role '{role}' after role 'tool'", "invalid_request_message_order"
            )
        if role == "assistant":
            pending = len(msg.get("tool_calls") or ())
            if not pending and not msg.get("content") and msg is not messages[-1]:
                # as the hosted API answers it (OpenHands/OpenHands#8685; mistral-common's validator)
                raise MistralError(
                    400, "Assistant message must have either content or tool_calls, but not none."
                )
        previous = role
    if pending != 0:
        raise MistralError(400, "Not the same number of function calls and responses")
    last = messages[-1]
    if last["role"] not in ("user", "tool") and not (last["role"] == "assistant" and last.get("prefix")):
        raise MistralError(
            400,
            f"Expected last role User or Tool (or Assistant with prefix True) for serving but got {last['role']}",
        )


# --- chat ------------------------------------------------------------------------------------


def _rand_id(length: int) -> str:
    return "".join(random.choices(string.ascii_letters + string.digits, k=length))


def _tool(body: Block, mode: Mode) -> str | None:
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or "auto"
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return str(choice["function"]["name"])
    if choice in ("any", "required") or (mode.tool and body["messages"][-1]["role"] != "tool"):
        return str(tools[0]["function"]["name"])
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in content or () if isinstance(p, dict))


def answer(body: Block, mode: Mode) -> Block:
    """The chat.completion object for ``body``: one choice per ``n``."""
    model, messages = body["model"], body["messages"]
    tool = _tool(body, mode)
    thinking = body.get("reasoning_effort") == "high" or "magistral" in model
    last = _text(messages[-1]["content"]) if messages[-1]["role"] == "tool" else last_user_text(messages)
    fmt = (body.get("response_format") or {}).get("type")
    text = orjson.dumps({"echo": last}).decode() if fmt in ("json_object", "json_schema") else f"echo: {last}"
    finish = "tool_calls" if tool else "stop"
    limit = body.get("max_tokens")
    if not tool and limit is not None and len(text.split()) > limit:
        text, finish = " ".join(text.split()[:limit]), "length"
    choices = []
    for i in range(int(body.get("n") or 1)):
        message: Block = {"role": "assistant", "content": text, "tool_calls": None, "prefix": False}
        if tool:
            call = {
                "id": _rand_id(9),
                "type": "function",
                "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
            }
            message.update(content="", tool_calls=[{**call, "index": 0}])
        elif thinking:
            think = {"type": "thinking", "thinking": [{"type": "text", "text": "The user wants an echo."}]}
            message["content"] = [think, {"type": "text", "text": text}]
        choices.append({"index": i, "message": message, "finish_reason": finish})
    per_choice = len((TOOL_ARGUMENTS if tool else text).split()) + (5 if thinking and not tool else 0)
    prompt, completion = prompt_tokens(messages), per_choice * len(choices)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


async def _chat(request: web.Request, body: Block) -> web.StreamResponse:
    validate_chat(body)
    model = body["model"]
    if "context" in model:
        used = CONTEXT_WINDOW + prompt_tokens(body["messages"])
        raise MistralError(
            400,
            f"Prompt contains {used} tokens and 0 draft tokens, too large for model with "
            f"{CONTEXT_WINDOW} maximum context length",
        )
    mode = mode_of(model)
    await _apply_mode(request, mode, model)
    response = answer(body, mode)
    if body.get("stream"):
        return await stream_response(
            request, events(response), cut=mode.cut, stall=mode.stall, whole=mode.whole
        )
    return web.json_response(response)


def _deltas(message: Block) -> list[Block]:
    if message["tool_calls"]:
        return [{"content": "", "tool_calls": message["tool_calls"]}]
    content = message["content"]
    chunks = content if isinstance(content, list) else [{"type": "text", "text": content}]
    deltas: list[Block] = []
    for chunk in chunks:
        if chunk["type"] == "thinking":
            for part in chunk["thinking"]:
                pieces = [part["text"][i : i + 6] for i in range(0, len(part["text"]), 6)]
                deltas += [
                    {"content": [{"type": "thinking", "thinking": [{"type": "text", "text": p}]}]}
                    for p in pieces
                ]
        else:
            deltas += [{"content": chunk["text"][i : i + 4]} for i in range(0, len(chunk["text"]), 4)]
    return deltas


def events(response: Block) -> list[bytes]:
    """The stream of ``response``: usage rides on the last chunk, next to ``finish_reason``."""
    base = {k: response[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def event(index: int, delta: Block, finish: str | None = None, usage: Block | None = None) -> bytes:
        chunk = {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    out: list[bytes] = []
    choices = response["choices"]
    for choice in choices:
        i = choice["index"]
        out.append(event(i, {"role": "assistant", "content": ""}))
        out += [event(i, d) for d in _deltas(choice["message"])]
        usage = response["usage"] if choice is choices[-1] else None
        out.append(event(i, {"content": ""}, choice["finish_reason"], usage))
    return [*out, b"data: [DONE]\n\n"]


# --- embeddings -------------------------------------------------------------------------------


async def _embeddings(request: web.Request, body: Block) -> web.StreamResponse:
    _extra(body, _EMBED_FIELDS, [])
    model, texts = body.get("model"), body.get("input")
    if not isinstance(model, str):
        raise unprocessable("missing", ["model"], "Field required")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise unprocessable(
            "string_type", ["input"], "Input should be a valid string or list of strings", texts
        )
    _range(body, "output_dimension", 1)
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise unprocessable("enum", ["encoding_format"], "Input should be 'float' or 'base64'", fmt)
    mode = mode_of(model)
    await _apply_mode(request, mode, model)
    dims = int(body.get("output_dimension") or 8)
    data = [
        {"object": "embedding", "embedding": embedding_vector(model, t, dims), "index": i}
        for i, t in enumerate(texts)
    ]
    words = sum(len(t.split()) for t in texts)
    usage = {"prompt_tokens": words, "total_tokens": words, "completion_tokens": 0}
    return web.json_response(
        {"id": uuid.uuid4().hex, "object": "list", "data": data, "model": model, "usage": usage}
    )
