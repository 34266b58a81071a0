"""A faithful fake of Cohere's v2 API: ``POST /v2/chat`` (JSON and SSE) and ``POST /v2/embed``.

Validation follows the v2 references (https://docs.cohere.com/reference/chat,
https://docs.cohere.com/reference/embed). Error bodies have the documented shape
``{"id": ..., "message": ...}`` (https://docs.cohere.com/reference/errors):

- unknown fields: 422 ``unknown field: parameter <name> is not a valid field. For proper
  usage, please refer to https://docs.cohere.com/reference/chat`` (the real wording,
  github.com/cohere-ai/notebooks/issues/226);
- other invalid values: 400 ``invalid request: ...``. The prefix is the real one; the
  rest of each sentence is this fake's wording, as the references list no messages;
- ``Authorization: Bearer <key>``: 401 ``no api key supplied`` / ``invalid api token``.

Checked like the references state: roles ``system``/``user``/``assistant``/``tool`` and
each role's fields; ``tool_call_id`` answers a tool call of the last assistant turn;
``p`` in 0.01..0.99, ``k`` in 0..500, penalties in 0..1, ``temperature`` >= 0,
at most 5 ``stop_sequences``; ``tool_choice`` REQUIRED (needs ``tools``) or NONE;
``response_format`` text or json_object (``json_schema`` only with json_object);
``thinking`` enabled/disabled with a positive ``token_budget``. Embed: at most 96
``texts``, ``embedding_types`` required (v2), ``input_type`` required for v3+ models
("valid input_type must be provided with the provided model"), ``output_dimension``
256/512/1024/1536 on v4+ only.

Answers: ``"echo: <last user text>"`` (or of the last tool result), JSON with a
``json_object`` format; with the ``tool`` mode or ``tool_choice: REQUIRED`` (and no
tool result to answer), a ``tool_plan`` and a call to the first tool with arguments
``{"location": "Paris"}``; a model containing ``reason`` (or ``thinking`` enabled) adds a
thinking block; ``cached`` reports ``cached_tokens``; ``context`` fails with "too many
tokens". Tokens are words: ``usage.tokens.input_tokens`` counts the words plus 4 per
message (the prompt template), ``billed_units.input_tokens`` the words only.
``max_tokens`` and ``stop_sequences`` cut the answer with MAX_TOKENS / STOP_SEQUENCE.
Embeddings are 8-dimensional unless ``output_dimension`` is set.

Streams follow https://docs.cohere.com/docs/streaming (``message-start``, ``content-*``,
``tool-plan-delta``, ``tool-call-*``, ``message-end`` with usage), written in awkward
splits. Failure modes come from :func:`tests.fakes.common.mode_of` (429 sends
``Retry-After: 7``). Requests are recorded in ``app["requests"]`` as ``{"method",
"path", "headers", "body"}``.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.common import FakeProvider, Mode, abort, last_user_text, mode_of, stream_response
from tests.fakes.openai import embedding_vector

__all__ = ["API_KEY", "TOOL_ARGUMENTS", "cohere_app", "fake_provider"]

Block = dict[str, Any]

API_KEY = "co-fake-key-0123456789"
TOOL_ARGUMENTS = '{"location": "Paris"}'
_DOCS = "https://docs.cohere.com/reference"
_CHAT_FIELDS = frozenset(
    {"stream", "model", "messages", "tools", "strict_tools", "documents", "citation_options"}
    | {"response_format", "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed"}
    | {"frequency_penalty", "presence_penalty", "k", "p", "logprobs", "tool_choice", "thinking", "priority"}
)
_EMBED_FIELDS = frozenset(
    {"model", "input_type", "texts", "images", "inputs", "max_tokens", "output_dimension"}
    | {"embedding_types", "truncate", "priority"}
)
_MESSAGE_FIELDS = {
    "system": {"role", "content"},
    "user": {"role", "content"},
    "assistant": {"role", "content", "tool_calls", "tool_plan", "citations"},
    "tool": {"role", "tool_call_id", "content"},
}
_BLOCK_TYPES = {"system": {"text"}, "user": {"text", "image_url"}, "assistant": {"text", "thinking"}}
_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
_STATUS_MESSAGES = {
    401: "invalid api token",
    402: "Please add or update your payment method at https://dashboard.cohere.com/billing to continue",
    429: "You are using a Trial key, which is limited to 10 API calls / minute. You can continue to use "
    "the Trial key for free or upgrade to a Production key with higher rate limits",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable, please try again later",
}


class CohereError(Exception):
    """An error answered in Cohere's shape."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self) -> web.Response:
        body = {"id": str(uuid.uuid4()), "message": self.message}
        return web.json_response(body, status=self.status, headers=self.headers)


def invalid(message: str) -> CohereError:
    return CohereError(400, f"invalid request: {message}")


def unknown(name: str, page: str) -> CohereError:
    return CohereError(
        422, f"unknown field: parameter {name} is not a valid field. For proper usage, please refer to {page}"
    )


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``cohere`` type against this fake."""
    return FakeProvider(
        "cohere",
        lambda: cohere_app(api_key=API_KEY),
        api_key=API_KEY,
        chat_model="command-a-03-2025",
        embed_model="embed-v4.0",
    )


def cohere_app(*, api_key: str | None = None) -> web.Application:
    """The fake; with ``api_key`` only that key is accepted, otherwise any non-empty one."""
    app = web.Application()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
    app.router.add_post("/v2/chat", _endpoint(_chat, api_key))
    app.router.add_post("/v2/embed", _endpoint(_embed, api_key))
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
        try:
            scheme, _, key = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise CohereError(401, "no api key supplied")
            if api_key is not None and key.strip() != api_key:
                raise CohereError(401, "invalid api token")
            if not isinstance(body, dict):
                raise invalid("the request body must be a valid JSON object")
            return await handler(request, body)
        except CohereError as exc:
            return exc.response()

    return run


async def _apply_mode(request: web.Request, mode: Mode, model: str) -> None:
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status is not None:
        headers = {"Retry-After": "7"} if mode.status == 429 else None
        default = f"model '{model}' not found, make sure the correct model ID was used and that you have access to the model."
        text = _STATUS_MESSAGES.get(mode.status, default if mode.status == 404 else f"error {mode.status}")
        raise CohereError(mode.status, text, headers)


# --- validation --------------------------------------------------------------------------------


def _number(body: Block, name: str, low: float | None, high: float | None, *, integer: bool = False) -> None:
    value = body.get(name)
    if value is None:
        return
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise invalid(f"{name} must be {'an integer' if integer else 'a number'}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(f"{name} must be {bounds}, received {value}")


def validate_chat(body: Block) -> None:
    """Check a v2 chat body like the real API (see the module docstring)."""
    for name in body:
        if name not in _CHAT_FIELDS:
            raise unknown(name, f"{_DOCS}/chat")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model is required")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid("stream must be a boolean")
    _number(body, "temperature", 0, None)
    _number(body, "p", 0.01, 0.99)
    _number(body, "k", 0, 500, integer=True)
    _number(body, "frequency_penalty", 0, 1)
    _number(body, "presence_penalty", 0, 1)
    _number(body, "max_tokens", 1, None, integer=True)
    _number(body, "seed", None, None, integer=True)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise invalid("stop_sequences must be a list of strings")
    if stops and len(stops) > 5:
        raise invalid(f"stop_sequences can have at most 5 items, received {len(stops)}")
    _check_tools(body)
    _check_format_and_thinking(body)
    _check_messages(body.get("messages"))


def _check_tools(body: Block) -> None:
    tools = body.get("tools") or []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or tool.get("type") != "function":
            raise invalid(f"tools[{i}] must be of type function with a function object")
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("parameters"), dict):
            raise invalid(f"tools[{i}].function must have a name and parameters")
        for name in fn.keys() - {"name", "description", "parameters"}:
            raise unknown(f"tools[{i}].function.{name}", f"{_DOCS}/chat")
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        raise invalid(f"tool_choice must be one of REQUIRED, NONE, received {choice!r}")
    if choice == "REQUIRED" and not tools:
        raise invalid("tool_choice REQUIRED needs tools to be specified")


def _check_format_and_thinking(body: Block) -> None:
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind not in ("text", "json_object"):
            raise invalid("response_format.type must be one of text, json_object")
        if "json_schema" in fmt and (kind != "json_object" or not isinstance(fmt["json_schema"], dict)):
            raise invalid("response_format.json_schema must be an object, with type json_object")
        if kind == "json_object" and body.get("tools"):
            # ResponseFormatV2: "not supported when used in combinations with ... tools"
            raise invalid("response_format is not supported with tools")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
            raise invalid("thinking.type must be one of enabled, disabled")
        budget = thinking.get("token_budget")
        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget < 1):
            raise invalid("thinking.token_budget must be a positive integer")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("messages must be a non-empty list")
    offered: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if role not in _MESSAGE_FIELDS:
            raise invalid(
                f"messages[{i}].role must be one of system, user, assistant, tool, received {role!r}"
            )
        for name in sorted(msg.keys() - _MESSAGE_FIELDS[role]):
            raise unknown(f"messages[{i}].{name}", f"{_DOCS}/chat")
        if role == "assistant":
            offered = _check_assistant(msg, i)
            continue
        if role == "tool":
            if msg.get("tool_call_id") not in offered:
                raise invalid(
                    f"messages[{i}].tool_call_id {msg.get('tool_call_id')!r} does not match a tool call "
                    "of the preceding assistant message"
                )
        else:
            offered = set()
        _check_content(msg.get("content"), role, i)


def _check_content(content: Any, role: str, i: int) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"messages[{i}].content must be a string or a list of content blocks")
    allowed = _BLOCK_TYPES.get(role, {"text", "document"})
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in allowed:
            raise invalid(f"messages[{i}].content[{j}].type must be one of {', '.join(sorted(allowed))}")
        if kind in ("text", "thinking") and not isinstance(block.get(kind), str):
            raise invalid(f"messages[{i}].content[{j}].{kind} must be a string")
        if kind == "image_url" and not isinstance((block.get("image_url") or {}).get("url"), str):
            raise invalid(f"messages[{i}].content[{j}].image_url.url is required")


def _check_assistant(msg: Block, i: int) -> set[str]:
    calls = msg.get("tool_calls") or []
    if msg.get("content") in (None, "", []) and not calls:
        raise invalid(f"messages[{i}]: an assistant message must have content or tool_calls")
    if msg.get("content") is not None:
        _check_content(msg["content"], "assistant", i)
    for k, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not call.get("id") or call.get("type") != "function":
            raise invalid(f"messages[{i}].tool_calls[{k}] must have an id, type function and a function")
        if not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments"), str):
            raise invalid(f"messages[{i}].tool_calls[{k}].function must have a name and string arguments")
    return {str(c["id"]) for c in calls}


# --- chat ------------------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text", "")) for b in content or () if isinstance(b, dict))


def _usage(body: Block, output: int) -> Block:
    messages = body["messages"]
    words = sum(_words(_text_of(m.get("content")) + " " + str(m.get("tool_plan") or "")) for m in messages)
    tokens_in = words + 4 * len(messages)
    usage: Block = {
        "billed_units": {"input_tokens": float(words), "output_tokens": float(output)},
        "tokens": {"input_tokens": float(tokens_in), "output_tokens": float(output)},
    }
    if "cached" in body["model"]:
        usage["cached_tokens"] = float(tokens_in // 2)
    return usage


def _tool_to_call(body: Block, mode: Mode) -> str | None:
    tools = body.get("tools") or []
    if not tools or body.get("tool_choice") == "NONE":
        return None
    answering = body["messages"][-1]["role"] == "tool"
    if body.get("tool_choice") == "REQUIRED" or (mode.tool and not answering):
        return str(tools[0]["function"]["name"])
    return None


def _cut(text: str, body: Block) -> tuple[str, str]:
    for stop in body.get("stop_sequences") or ():
        if stop and stop in text:
            return text[: text.index(stop)], "STOP_SEQUENCE"
    words = text.split(" ")
    limit = body.get("max_tokens")
    if limit is not None and len(words) > limit:
        return " ".join(words[:limit]), "MAX_TOKENS"
    return text, "COMPLETE"


def answer(body: Block, mode: Mode) -> Block:
    """The non-streamed v2 chat response for ``body``."""
    model, messages = body["model"], body["messages"]
    message: Block = {"role": "assistant"}
    content: list[Block] = []
    thinking = (body.get("thinking") or {}).get("type")
    # a reasoning model thinks unless told not to (https://docs.cohere.com/docs/reasoning)
    if ("reason" in model and thinking != "disabled") or thinking == "enabled":
        content.append({"type": "thinking", "thinking": "The user wants an echo."})
    tool = _tool_to_call(body, mode)
    if tool is not None:
        message["tool_plan"] = f"I will call {tool} to answer."
        message["tool_calls"] = [
            {
                "id": f"{tool}_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": tool, "arguments": TOOL_ARGUMENTS},
            }
        ]
        finish, output = "TOOL_CALL", 6 + _words(message["tool_plan"])
    else:
        last = (
            last_user_text(messages) if messages[-1]["role"] != "tool" else _text_of(messages[-1]["content"])
        )
        fmt = (body.get("response_format") or {}).get("type")
        text = orjson.dumps({"echo": last}).decode() if fmt == "json_object" else f"echo: {last}"
        text, finish = _cut(text, body)
        content.append({"type": "text", "text": text})
        output = _words(text)
    output += sum(_words(b.get("thinking", "")) for b in content)
    if content:
        message["content"] = content
    return {
        "id": str(uuid.uuid4()),
        "message": message,
        "finish_reason": finish,
        "usage": _usage(body, output),
    }


async def _chat(request: web.Request, body: Block) -> web.StreamResponse:
    validate_chat(body)
    model = body["model"]
    if "context" in model:
        received = 128000 + sum(_words(_text_of(m.get("content"))) for m in body["messages"])
        raise invalid(
            f"too many tokens: total number of tokens in the prompt cannot exceed 128000 - received {received}. "
            "Try using a shorter prompt"
        )
    mode = mode_of(model)
    await _apply_mode(request, mode, model)
    response = answer(body, mode)
    if body.get("stream"):
        return await stream_response(
            request, events(response), cut=mode.cut, stall=mode.stall, whole=mode.whole
        )
    return web.json_response(response)


def _sse(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def events(response: Block) -> list[bytes]:
    """The SSE events that stream ``response``."""
    message = response["message"]
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    out = [_sse("message-start", id=response["id"], delta={"message": start})]
    for i, block in enumerate(message.get("content") or ()):
        kind = block["type"]
        out.append(_sse("content-start", index=i, delta={"message": {"content": {"type": kind, kind: ""}}}))
        out += [
            _sse("content-delta", index=i, delta={"message": {"content": {kind: piece}}})
            for piece in _pieces(block[kind], 5)
        ]
        out.append(_sse("content-end", index=i))
    out += [
        _sse("tool-plan-delta", delta={"message": {"tool_plan": piece}})
        for piece in _pieces(message.get("tool_plan") or "", 8)
    ]
    for i, call in enumerate(message.get("tool_calls") or ()):
        first = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        out.append(_sse("tool-call-start", index=i, delta={"message": {"tool_calls": first}}))
        out += [
            _sse(
                "tool-call-delta", index=i, delta={"message": {"tool_calls": {"function": {"arguments": p}}}}
            )
            for p in _pieces(call["function"]["arguments"], 4)
        ]
        out.append(_sse("tool-call-end", index=i))
    end = {"finish_reason": response["finish_reason"], "usage": response["usage"]}
    out.append(_sse("message-end", id=response["id"], delta=end))
    return out


# --- embed ------------------------------------------------------------------------------------


def _major_version(model: str) -> int:
    match = re.search(r"v(\d+)", model)
    return int(match.group(1)) if match else 4


def validate_embed(body: Block) -> list[str]:
    """Check a v2 embed body like the real API; return the texts."""
    for name in body:
        if name not in _EMBED_FIELDS:
            raise unknown(name, f"{_DOCS}/embed")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model is required")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise invalid("texts must be a non-empty list of strings")
    if len(texts) > 96:
        raise invalid(f"texts can have at most 96 items, received {len(texts)}")
    input_type = body.get("input_type")
    if input_type is None and _major_version(model) >= 3:
        raise invalid("valid input_type must be provided with the provided model")
    if input_type is not None and input_type not in _INPUT_TYPES:
        raise invalid(f"input_type must be one of {', '.join(_INPUT_TYPES)}")
    types = body.get("embedding_types")
    if not isinstance(types, list) or not types or any(t not in _EMBEDDING_TYPES for t in types):
        raise invalid(f"embedding_types is required, a list of {', '.join(_EMBEDDING_TYPES)}")
    dims = body.get("output_dimension")
    if dims is not None and (_major_version(model) < 4 or dims not in (256, 512, 1024, 1536)):
        raise invalid("output_dimension must be one of 256, 512, 1024, 1536 and needs an embed-v4 model")
    return texts


async def _embed(request: web.Request, body: Block) -> web.StreamResponse:
    texts = validate_embed(body)
    model = body["model"]
    mode = mode_of(model)
    await _apply_mode(request, mode, model)
    dims = int(body.get("output_dimension") or 8)
    words = sum(_words(t) for t in texts)
    vectors = [embedding_vector(model, t, dims) for t in texts]
    return web.json_response(
        {
            "id": str(uuid.uuid4()),
            "embeddings": {"float": vectors} if "float" in body["embedding_types"] else {},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": float(words)}},
            "response_type": "embeddings_by_type",
        }
    )
