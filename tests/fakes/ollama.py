"""A faithful fake of Ollama's native API: ``/api/chat``, ``/api/embed``, ``/api/tags``.

Behaviour follows https://github.com/ollama/ollama/blob/main/docs/api.md and
the server's handlers (server/routes.go):

- an unknown model is 404 ``{"error": "model \\"x\\" not found, try pulling it first"}``;
- ``stream`` defaults to true (NDJSON, ``application/x-ndjson``);
- empty ``messages`` *loads* the model: 200 with ``done_reason: "load"``;
- unknown ``options`` keys are ignored (``Options.FromMap`` only logs them), a
  known key of the wrong type is a 500 ``option "stop" must be of type array``
  (a number for an integer option is truncated, as Go does);
- a known field of the wrong JSON type is a 400 ``json: cannot unmarshal ...``
  (Go's decoder, through gin's ``ShouldBindJSON``);
- images must be base64 (Go decodes ``[]byte`` fields from base64: 400 otherwise);
- tool-call ``arguments`` must be a JSON object (400 otherwise);
- ``think`` on a model without thinking is 400 ``"m" does not support thinking``,
  a level string on anything but gpt-oss is 400.

Deliberately stricter than Ollama, so that an adapter bug cannot hide: a role
outside system/user/assistant/tool is a 400 here (Ollama silently drops it from
the prompt), and so is a field Ollama does not know, in the request, a message,
a tool call or an embeddings request (Go's decoder ignores unknown fields: on
a real server whatever the adapter put there would be silently lost).

Models: failure-mode names (see ``tests.fakes.common``) are always installed;
others must be in ``models`` (default ``llama3.2``, ``nomic-embed-text``).
``tool`` models call the first declared tool, with a fresh ``call_xxxxxxxx`` id
as recent servers give (``tool-noid``: no id, as servers before tool call ids);
``tool-parallel`` calls every declared tool in one message, ``tool-preamble``
says ``"Let me check."`` before its call(s). A call's arguments are an instance
of the tool's ``parameters`` schema: each required property is filled (every
property when none is required), a string with the prompt's last word
(``"weather in Paris?"`` -> ``"Paris"``), an enum with its first value, other
types with a plain value of that type.
Names containing ``think`` or ``gpt-oss`` think before answering.

The answer (``echo: <last user text>``) ends before the first of
``options.stop`` it contains (the sequence left out, ``done_reason: "stop"``);
``options.num_predict`` cuts it to that many words (``done_reason: "length"``),
with no trailing space: the space before a word belongs to the word's token.

``logprobs: true`` (Ollama 0.12.11+) puts a ``logprobs`` list on each line, one
entry per word it generated (made-up, stable values; ``top_logprobs``
alternatives, the chosen word first, when asked), thinking words included; a
whole answer carries them all. A tool call's words come on a line of their own
before the call, with no text, as the server sends logprobs while its parser
holds back a call. ``top_logprobs`` outside 0-20 is the server's 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import re
import secrets
import warnings
from typing import Any

from aiohttp import web

from tests.fakes.common import FakeProvider, Mode, abort, last_user_text, mode_of, stream_response
from tests.fakes.structured import instance

__all__ = ["DEFAULT_MODELS", "ollama_app"]

DEFAULT_MODELS = ("llama3.2", "nomic-embed-text")
#: What ``preamble`` tool models say before their calls (as the other fakes do).
PREAMBLE = "Let me check."
_ROLES = {"system", "user", "assistant", "tool"}
#: The fields of api.ChatRequest, api.Message, api.ToolCall and api.EmbedRequest (api/types.go).
_CHAT_FIELDS = frozenset(
    {"model", "messages", "stream", "format", "keep_alive", "tools", "options", "think"}
    | {"truncate", "shift", "logprobs", "top_logprobs"}
)
_MESSAGE_FIELDS = frozenset(
    {"role", "content", "thinking", "images", "tool_calls", "tool_name", "tool_call_id"}
)
_TOOL_CALL_FIELDS = frozenset({"id", "function"})
_EMBED_FIELDS = frozenset({"model", "input", "truncate", "dimensions", "keep_alive", "options"})
_CREATED = "2025-07-07T20:22:19.184789Z"
#: Known options and their JSON types (api/types.go ``Options``); others are ignored.
_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": (int, float),  # Go: a JSON number is a float64, truncated into an int field
    "seed": (int, float),
    "num_predict": (int, float),
    "num_ctx": (int, float),
    "presence_penalty": (int, float),
    "frequency_penalty": (int, float),
    "repeat_penalty": (int, float),
    "stop": (list,),
}


class _RejectError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _tag(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def ollama_app(models: list[str] | None = None) -> web.Application:
    """The fake server; every request body is appended to ``app["requests"]``."""
    app = web.Application()
    with warnings.catch_warnings():
        # The tests address these by plain string keys (app["requests"]).
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["requests"] = []
        app["models"] = [_tag(m) for m in (models if models is not None else DEFAULT_MODELS)]
    app.router.add_post("/api/chat", _chat)
    app.router.add_post("/api/embed", _embed)
    app.router.add_get("/api/tags", _tags)
    return app


def _error(status: int, message: str) -> web.Response:
    headers = {"Retry-After": "7"} if status == 429 else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _unmarshal_error(field: str, value: Any, go_type: str) -> _RejectError:
    kind = {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), "number")
    return _RejectError(400, f"json: cannot unmarshal {kind} into Go struct field {field} of type {go_type}")


def _check_fields(where: str, obj: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise _RejectError(400, f"{where}: unknown field(s) {', '.join(unknown)} (the fake refuses them)")


#: What the server says for the statuses it sends on its own (server/routes.go handleScheduleError).
_FAILURES = {
    404: 'model "{model}" not found, try pulling it first',
    503: "server busy, please try again.  maximum pending requests exceeded",
}


async def _admit(request: web.Request) -> tuple[dict[str, Any], Mode]:
    """Parse, record and route a POST body; failure modes and unknown models end here."""
    raw = await request.read()
    if not raw:
        raise _RejectError(400, "missing request body")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _RejectError(400, f"invalid character in request body: {exc}") from exc
    if not isinstance(body, dict):
        raise _RejectError(400, "json: cannot unmarshal into Go value of type api.ChatRequest")
    request.app["requests"].append(body)
    _check_fields(request.path, body, _EMBED_FIELDS if request.path == "/api/embed" else _CHAT_FIELDS)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _unmarshal_error("ChatRequest.model", model, "string")
    if not model:
        raise _RejectError(400, "model is required")
    mode = mode_of(model)
    if mode.delay:
        await asyncio.sleep(mode.delay)
    if mode.drop:
        abort(request)
    if mode.status:
        failure = _FAILURES.get(mode.status, "fake ollama failure {status}")
        raise _RejectError(mode.status, failure.format(model=model, status=mode.status))
    if mode == Mode() and _tag(model) not in request.app["models"]:
        raise _RejectError(404, f'model "{model}" not found, try pulling it first')
    return body, mode


async def _tags(request: web.Request) -> web.Response:
    models = [
        {
            "name": name,
            "model": name,
            "modified_at": _CREATED,
            "size": 2019393189,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B"},
        }
        for name in request.app["models"]
    ]
    return web.json_response({"models": models})


async def _embed(request: web.Request) -> web.Response:
    try:
        body, _ = await _admit(request)
        texts = _embed_input(body.get("input"))
        dims = body.get("dimensions") or 8
        if not isinstance(dims, int) or dims < 1:
            raise _RejectError(400, "dimensions must be a positive integer")
        if not isinstance(body.get("truncate", True), bool):
            raise _unmarshal_error("EmbedRequest.truncate", body["truncate"], "bool")
    except _RejectError as exc:
        return _error(exc.status, str(exc))
    return web.json_response(
        {
            "model": body["model"],
            "embeddings": [_vector(t, dims) for t in texts],
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": sum(len(t.split()) for t in texts),
        }
    )


def _embed_input(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise _RejectError(400, "invalid input type")


def _vector(text: str, dims: int) -> list[float]:
    """Deterministic, L2-normalised (as Ollama's are) pseudo-embedding."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [digest[i % len(digest)] - 127.5 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


async def _chat(request: web.Request) -> web.StreamResponse:
    try:
        body, mode = await _admit(request)
        stream = _check_chat(body)
    except _RejectError as exc:
        return _error(exc.status, str(exc))
    model = body["model"]
    if not body["messages"]:
        return web.json_response(_line(model, {"content": ""}, done_reason="load"))
    thinking, content, calls, reason = _answer(body, mode)
    called = "".join(json.dumps(c["function"]) for c in calls)
    generated = content + called  # a call is generated text too
    final = _line(model, {"content": ""}, done_reason=reason, **_counts(body, thinking, generated))
    top = body.get("top_logprobs") or 0
    scores = _Logprobs(top) if body.get("logprobs") else None
    if not stream:
        message: dict[str, Any] = {"content": content}
        if thinking:
            message["thinking"] = thinking
        if calls:
            message["tool_calls"] = calls
        answer = {**final, "message": {"role": "assistant", **message}}
        if scores is not None:
            answer["logprobs"] = scores.of(_words(thinking) + _words(content) + _words(called))
        return web.json_response(answer)
    lines = [_line(model, {"content": "", "thinking": w}) for w in _words(thinking)]
    lines += [_line(model, {"content": w}) for w in _words(content)]
    if scores is not None:
        for line in lines:
            message = line["message"]
            line["logprobs"] = scores.of([message.get("thinking") or message["content"]])
        if calls:
            lines.append({**_line(model, {"content": ""}), "logprobs": scores.of(_words(called))})
    if calls:
        lines.append(_line(model, {"content": "", "tool_calls": calls}))
    events = [json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in [*lines, final]]
    return await stream_response(
        request, events, content_type="application/x-ndjson", cut=mode.cut, stall=mode.stall, whole=mode.whole
    )


def _check_chat(body: dict[str, Any]) -> bool:
    """Validate like Ollama does; returns whether to stream."""
    messages = body.get("messages", [])
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise _unmarshal_error("ChatRequest.messages", messages, "[]api.Message")
    for i, msg in enumerate(messages):
        _check_message(i, msg)
    body["messages"] = messages
    _check_tools(body.get("tools"))
    keep_alive = body.get("keep_alive")
    if keep_alive is not None and (
        isinstance(keep_alive, bool) or not isinstance(keep_alive, (str, int, float))
    ):
        raise _RejectError(400, "json: unsupported type for keep_alive")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise _RejectError(400, "json: cannot unmarshal into Go struct field ChatRequest.stream of type bool")
    _check_think(body["model"], body.get("think"))
    _check_options(body.get("options") or {})
    _check_logprobs(body)
    fmt = body.get("format")
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        raise _RejectError(400, 'invalid format: expected "json" or a valid JSON schema')
    return stream


def _check_message(i: int, msg: Any) -> None:
    if not isinstance(msg, dict):
        raise _unmarshal_error("ChatRequest.messages", msg, "api.Message")
    _check_fields(f"messages[{i}]", msg, _MESSAGE_FIELDS)
    for name in ("role", "content", "thinking", "tool_name", "tool_call_id"):
        value = msg.get(name)
        if value is not None and not isinstance(value, str):
            raise _unmarshal_error(f"ChatRequest.messages.{name}", value, "string")
    role = str(msg.get("role", "")).lower()
    if role not in _ROLES:
        raise _RejectError(400, f"messages[{i}]: invalid role {msg.get('role')!r}")
    images = msg.get("images") or []
    if not isinstance(images, list):
        raise _unmarshal_error("ChatRequest.messages.images", images, "[]api.ImageData")
    for image in images:
        if not isinstance(image, str):
            raise _unmarshal_error("ChatRequest.messages.images", image, "api.ImageData")
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _RejectError(400, f"illegal base64 data in messages[{i}].images: {exc}") from exc
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _unmarshal_error("ChatRequest.messages.tool_calls", calls, "[]api.ToolCall")
    for k, call in enumerate(calls):
        if not isinstance(call, dict):
            raise _unmarshal_error("ChatRequest.messages.tool_calls", call, "api.ToolCall")
        _check_fields(f"messages[{i}].tool_calls[{k}]", call, _TOOL_CALL_FIELDS)
        function = call.get("function")
        if not isinstance(function, dict):
            raise _unmarshal_error("ToolCall.function", function, "api.ToolCallFunction")
        if not isinstance(function.get("name", ""), str):
            raise _unmarshal_error("ToolCallFunction.name", function["name"], "string")
        if not isinstance(function.get("arguments", {}), dict):
            raise _unmarshal_error(
                "ToolCallFunction.arguments", function["arguments"], "api.ToolCallFunctionArguments"
            )


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _unmarshal_error("ChatRequest.tools", tools, "api.Tools")
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _unmarshal_error("ChatRequest.tools", tool, "api.Tool")
        if not isinstance(function.get("parameters", {}), dict):
            raise _unmarshal_error(
                "ToolFunction.parameters", function["parameters"], "api.ToolFunctionParameters"
            )


def _thinks(model: str) -> bool:
    return "think" in model or "gpt-oss" in model


def _check_logprobs(body: dict[str, Any]) -> None:
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _unmarshal_error("ChatRequest.logprobs", logprobs, "bool")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)):
        raise _unmarshal_error("ChatRequest.top_logprobs", top, "int")
    if top is not None and not 0 <= top <= 20:
        raise _RejectError(400, "top_logprobs must be between 0 and 20")


class _Logprobs:
    """Made-up, stable log probabilities for the words a fake answer generates, in order."""

    def __init__(self, top: int) -> None:
        self._top = top
        self._step = 0

    def of(self, words: list[str]) -> list[dict[str, Any]]:
        out = []
        for word in words:
            logprob = -0.05 * (self._step % 7 + 1)
            self._step += 1
            entry: dict[str, Any] = {"token": word, "logprob": logprob, "bytes": list(word.encode())}
            if self._top:
                others = [
                    {"token": f" alt{j}", "logprob": logprob - j, "bytes": list(f" alt{j}".encode())}
                    for j in range(1, self._top)
                ]
                entry["top_logprobs"] = [{k: entry[k] for k in ("token", "logprob", "bytes")}, *others]
            out.append(entry)
        return out


def _check_think(model: str, think: Any) -> None:
    if think is None or think is False:
        return
    if isinstance(think, str) and think not in ("low", "medium", "high"):
        raise _RejectError(
            400, f'invalid think value: "{think}" (must be "high", "medium", "low", true, or false)'
        )
    if not isinstance(think, (bool, str)):
        raise _RejectError(400, "invalid think value")
    if not _thinks(model):
        raise _RejectError(400, f'"{model}" does not support thinking')
    if isinstance(think, str) and "gpt-oss" not in model:
        raise _RejectError(400, f'think value "{think}" is not supported for this model')


def _check_options(options: Any) -> None:
    if not isinstance(options, dict):
        raise _RejectError(400, "json: cannot unmarshal into Go struct field ChatRequest.options")
    for key, value in options.items():
        types = _OPTION_TYPES.get(key)
        if types is None or value is None:
            continue  # unknown options are only logged by Ollama
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "array" if types == (list,) else types[-1].__name__
            raise _RejectError(500, f'option "{key}" must be of type {kind}')


def _answer(body: dict[str, Any], mode: Mode) -> tuple[str, str, list[dict[str, Any]], str]:
    """(thinking, content, tool_calls, done_reason) for a validated request."""
    text = last_user_text(body["messages"])
    think = body.get("think")
    thinking = f"The user said {text}." if _thinks(body["model"]) and think is not False else ""
    tools = body.get("tools") or []
    model = body["model"]
    if mode.tool and tools:
        calls: list[dict[str, Any]] = []
        for index, tool in enumerate(tools if "parallel" in model else tools[:1]):
            function = tool["function"]
            arguments = _arguments(function.get("parameters") or {}, text)
            call: dict[str, Any] = {
                "function": {"index": index, "name": function["name"], "arguments": arguments}
            }
            if "noid" not in model:  # servers before tool call ids send none
                call = {"id": f"call_{secrets.token_hex(4)}", **call}
            calls.append(call)
        return thinking, PREAMBLE if "preamble" in model else "", calls, "stop"
    fmt = body.get("format")
    if isinstance(fmt, dict):  # a JSON schema: structured outputs, an instance of it
        content = json.dumps(instance(fmt, text))
    else:
        content = json.dumps({"echo": text}) if fmt else f"echo: {text}"
    options = body.get("options") or {}
    for stop in options.get("stop") or ():
        if stop and stop in content:  # the answer ends before the sequence, which is left out
            content = content[: content.index(stop)]
    limit = options.get("num_predict")
    words = content.split()
    if isinstance(limit, int) and 0 < limit < len(words):
        return thinking, " ".join(words[:limit]), [], "length"
    return thinking, content, [], "stop"


def _arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """An instance of a tool's ``parameters``, filled from the prompt: its required properties,
    or every property when none is required (a model fills what the call needs)."""
    properties = schema.get("properties") or {}
    words = re.findall(r"\w+", text)
    word = words[-1] if words else text
    names = schema.get("required") or list(properties)
    return {name: _value(properties.get(name) or {}, word) for name in names}


def _value(prop: dict[str, Any], word: str) -> Any:
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    plain: dict[str, Any] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    return plain.get(kind, word) if isinstance(kind, str) else word


def _words(text: str) -> list[str]:
    """Token-like pieces that join back to ``text`` exactly."""
    pieces = text.split(" ")
    return [p for p in [*(p + " " for p in pieces[:-1]), pieces[-1]] if p]


def _counts(body: dict[str, Any], thinking: str, content: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    return {
        "total_duration": 182242375,
        "load_duration": 41295167,
        "prompt_eval_count": prompt,
        "prompt_eval_duration": 24573166,
        "eval_count": len(_words(thinking)) + len(_words(content)),
        "eval_duration": 115959084,
    }


def _line(
    model: str, message: dict[str, Any], *, done_reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "model": model,
        "created_at": _CREATED,
        "message": {"role": "assistant", **message},
        "done": done_reason is not None,
    }
    if done_reason is not None:
        line["done_reason"] = done_reason
    return {**line, **extra}


def fake_provider() -> FakeProvider:
    """How the contract suite (tests/contract/) runs the ``ollama`` type against this fake (no key)."""
    return FakeProvider(
        "ollama",
        lambda: ollama_app(["llama3.2", "nomic-embed-text"]),
        api_key=None,
        chat_model="llama3.2",
        embed_model="nomic-embed-text",
    )
